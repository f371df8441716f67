"""`python -m ops.backup dump|restore`: mongodump's and mongorestore's directory format, written and read
with pymongo's bson, for the backup drill on this machine.

Production backs up with MongoDB's own `mongodump` and restores with `mongorestore` (deploy/backup/:
the CronJob and the compose service run the `mongo` image). Neither tool can be installed here (no
Debian package for bookworm, no PyPI package that ships them), so the drill in tests/test_backup.py runs
the same scripts with this module standing in for the two commands, over the same files: one
directory per database, `<collection>.bson` holding the documents as raw BSON one after the other (the
bytes the server sent, not re-encoded) and `<collection>.metadata.json` with the collection's options
and indexes in canonical Extended JSON, each gzipped with `--gzip`. A dump written here is read by the
real mongorestore, and this reads what the real mongodump writes (without `--archive`).

What only the real tools do, and deploy/README.md says so: `--oplog` / `--oplogReplay` (a dump
consistent to one instant across every database of a live replica set), `--archive`, users and
roles, views, time-series and capped collections' special cases, parallel collections.

Only the options the scripts use are accepted, spelled as the real tools spell them; anything else is
refused rather than ignored.
"""
import argparse
import fnmatch
import gzip
import sys
from pathlib import Path

from bson import decode_file_iter, json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

SYSTEM_DATABASES = {"admin", "local", "config"}
RAW = CodecOptions(document_class=RawBSONDocument)
BATCH = 1000


def _open(path, mode, zipped):
    return gzip.open(path, mode) if zipped else open(path, mode)


def _suffix(zipped):
    return ".gz" if zipped else ""


def dump(client, out, zipped=False, database=None, say=print):
    """Every collection of every user database (or of `database`) into `out`. Returns
    {database: {collection: documents}}."""
    out = Path(out)
    names = [database] if database else [n for n in client.list_database_names() if n not in SYSTEM_DATABASES]
    written = {}
    for name in sorted(names):
        db = client.get_database(name, codec_options=RAW)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = {}
        for info in sorted(client[name].list_collections(), key=lambda i: i["name"]):
            collection = info["name"]
            if collection.startswith("system.") or info.get("type", "collection") != "collection":
                continue
            count = 0
            with _open(folder / (collection + ".bson" + _suffix(zipped)), "wb", zipped) as handle:
                for document in db[collection].find(sort=[("_id", 1)]):
                    handle.write(document.raw)
                    count += 1
            metadata = {
                "options": info.get("options", {}),
                "indexes": list(client[name][collection].list_indexes()),
                "collectionName": collection,
                "type": "collection",
            }
            uuid = info.get("info", {}).get("uuid")
            if uuid is not None:  # mongodump writes it as 32 hex digits
                metadata["uuid"] = (uuid.as_uuid() if hasattr(uuid, "as_uuid") else uuid).hex
            text = json_util.dumps(metadata, json_options=json_util.CANONICAL_JSON_OPTIONS)
            with _open(folder / (collection + ".metadata.json" + _suffix(zipped)), "wb", zipped) as handle:
                handle.write(text.encode("utf-8"))
            written[name][collection] = count
            say("done dumping {}.{} ({} documents)".format(name, collection, count))
    return written


def _collections(folder, zipped):
    suffix = ".bson" + _suffix(zipped)
    for path in sorted(folder.glob("*" + suffix)):
        yield path.name[:-len(suffix)], path


def restore(client, directory, zipped=False, drop=False, include=None, say=print):
    """What `dump` (or mongodump) wrote under `directory`, for the namespaces matching `include`
    (`db.collection` patterns with `*`, as --nsInclude). Returns {namespace: documents inserted}."""
    directory = Path(directory)
    include = include or ["*"]
    restored = {}
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        name = folder.name
        if name in SYSTEM_DATABASES:
            continue
        db = client[name]
        for collection, data_path in _collections(folder, zipped):
            namespace = "{}.{}".format(name, collection)
            if not any(fnmatch.fnmatchcase(namespace, pattern) for pattern in include):
                continue
            meta_path = folder / (collection + ".metadata.json" + _suffix(zipped))
            metadata = {}
            if meta_path.exists():
                with _open(meta_path, "rb", zipped) as handle:
                    metadata = json_util.loads(handle.read().decode("utf-8"))
            if drop:
                db.drop_collection(collection)
            if collection not in db.list_collection_names():
                db.create_collection(collection, **metadata.get("options", {}))
            target = db.get_collection(collection, codec_options=RAW)
            inserted = failed = 0
            with _open(data_path, "rb", zipped) as handle:
                batch = []
                for document in decode_file_iter(handle, RAW):
                    batch.append(document)
                    if len(batch) >= BATCH:
                        done, refused = _insert(target, batch)
                        inserted, failed = inserted + done, failed + refused
                        batch = []
                if batch:
                    done, refused = _insert(target, batch)
                    inserted, failed = inserted + done, failed + refused
            indexes = [dict(index) for index in metadata.get("indexes", []) if index.get("name") != "_id_"]
            for index in indexes:
                index.pop("v", None)
                index.pop("ns", None)
            if indexes:
                db.command("createIndexes", collection, indexes=indexes)
            restored[namespace] = inserted
            say("{}: {} documents restored, {} failed".format(namespace, inserted, failed))
    return restored


def _insert(collection, documents):
    """Like mongorestore: a document that is there already (same _id) is reported, not overwritten."""
    from pymongo.errors import BulkWriteError
    try:
        collection.insert_many(documents, ordered=False)
        return len(documents), 0
    except BulkWriteError as error:
        if any(e.get("code") != 11000 for e in error.details.get("writeErrors", ())):
            raise
        return error.details.get("nInserted", 0), len(error.details.get("writeErrors", ()))


def _uri_client(uri):
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10000)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ops.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump", help="as mongodump --uri=... --out=... [--gzip] [--db=...]")
    dumping.add_argument("--uri", required=True)
    dumping.add_argument("--out", required=True)
    dumping.add_argument("--gzip", action="store_true")
    dumping.add_argument("--db")
    restoring = commands.add_parser("restore", help="as mongorestore --uri=... --dir=... [--gzip] [--drop] [--nsInclude=...]")
    restoring.add_argument("--uri", required=True)
    restoring.add_argument("--dir", required=True)
    restoring.add_argument("--gzip", action="store_true")
    restoring.add_argument("--drop", action="store_true")
    restoring.add_argument("--nsInclude", action="append", dest="include")
    args = parser.parse_args(argv)
    client = _uri_client(args.uri)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731 - as the real tools, progress on stderr
    try:
        if args.command == "dump":
            dump(client, args.out, args.gzip, args.db, say=say)
        else:
            restore(client, args.dir, args.gzip, args.drop, args.include, say=say)
    finally:
        client.close()


if __name__ == "__main__":
    main()
