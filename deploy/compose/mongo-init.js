// Run once by the mongo-init container (mongosh, logged in as root): makes mongo1..3 the replica set
// rs0, or leaves it as it is when it already is one, waits until it has a primary, then makes each user
// (or sets its password and roles again): one per process with readWrite on its own database alone,
// the backup's (backup role) and the exporter's (clusterMonitor).
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

let primary = null;
for (let attempt = 0; attempt < 120 && !primary; attempt++) {
  primary = rs.status().members.find((member) => member.stateStr === "PRIMARY");
  if (!primary) {
    sleep(1000);
  }
}
if (!primary) {
  print("no primary after 120 s");
  quit(1);
}
print("primary: " + primary.name);
// Users are written on the primary.
db = connect("mongodb://root:" + process.env.MONGO_ROOT_PASSWORD + "@" + primary.name + "/admin?directConnection=true");

const prefix = process.env.DATABASE_PREFIX || "trainops";
const users = {};
for (const name of ["partners", "scheduling", "registration", "notifications", "gateway"]) {
  users["trainops-" + name] = [{ role: "readWrite", db: prefix + "_" + name }];
}
users["trainops-backup"] = [{ role: "backup", db: "admin" }];
users["trainops-monitor"] = [{ role: "clusterMonitor", db: "admin" }, { role: "read", db: "local" }];

for (const [user, roles] of Object.entries(users)) {
  const variable = "MONGO_" + user.replace("trainops-", "").toUpperCase() + "_PASSWORD";
  const password = process.env[variable];
  if (!password) {
    print("set " + variable);
    quit(1);
  }
  if (db.getUser(user)) {
    db.updateUser(user, { pwd: password, roles: roles });
    print("user " + user + " updated");
  } else {
    db.createUser({ user: user, pwd: password, roles: roles });
    print("user " + user + " created");
  }
}
quit(0);
