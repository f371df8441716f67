// Run once by the mongo-init container (mongosh): makes mongo1..3 the replica set rs0, or leaves it
// as it is when it already is one, then waits until it has a primary so the services find one.
const members = [
  { _id: 0, host: "mongo1:27017" },
  { _id: 1, host: "mongo2:27017" },
  { _id: 2, host: "mongo3:27017" },
];

try {
  rs.status();
  print("replica set rs0 already initiated");
} catch (error) {
  if (error.codeName !== "NotYetInitialized") {
    throw error;
  }
  rs.initiate({ _id: "rs0", members: members });
  print("replica set rs0 initiated");
}

for (let attempt = 0; attempt < 120; attempt++) {
  const primary = rs.status().members.find((member) => member.stateStr === "PRIMARY");
  if (primary) {
    print("primary: " + primary.name);
    quit(0);
  }
  sleep(1000);
}
print("no primary after 120 s");
quit(1);
