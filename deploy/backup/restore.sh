#!/usr/bin/env bash
# Restores one dump that backup.sh wrote: every collection it holds is dropped and written again from
# the dump (same documents, same _ids, same indexes), then the writes made while the dump ran are
# replayed (--oplogReplay), so the databases are as they were at the instant the dump ended.
#
#   MONGO_URI=<a user with the restore role> deploy/backup/restore.sh /backups/20261206T190000Z
#
# Stop the services first (deploy/README.md, "Backups and restore"): a service writing while its
# database is replaced would mix the two.
set -euo pipefail

: "${MONGO_URI:?set MONGO_URI: a user with the restore role}"
dump="${1:?usage: restore.sh <dump folder, e.g. /backups/20261206T190000Z>}"
restore_options="${RESTORE_OPTIONS---oplogReplay}"
[ -d "$dump" ] || { echo "restore: no dump at $dump" >&2; exit 1; }
case "$(basename "$dump")" in
    .partial-*) echo "restore: $dump is a dump that did not finish" >&2; exit 1 ;;
esac

# shellcheck disable=SC2086  # the options are words
mongorestore --uri="$MONGO_URI" --gzip --drop --dir="$dump" $restore_options
echo "restore: $dump restored"
