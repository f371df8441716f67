#!/usr/bin/env bash
# One backup of trainops' MongoDB: mongodump of the whole replica set, consistent to one instant
# (--oplog: the writes made while it ran are dumped too and replayed on restore), gzipped, into
# $BACKUP_DIR/<UTC time>/ (one folder per database, one .bson.gz and .metadata.json.gz per collection).
# Then retention: the newest $BACKUP_KEEP dumps stay, older ones are removed.
#
# Run by the CronJob of deploy/k8s/backup.yaml and by the `backup` service of deploy/compose, both in the
# mongo image. MONGO_URI is a user with the `backup` role. Restore: restore.sh, and deploy/README.md.
set -euo pipefail

: "${MONGO_URI:?set MONGO_URI: a user with the backup role}"
dir="${BACKUP_DIR:-/backups}"
keep="${BACKUP_KEEP:-14}"
# --oplog needs a replica set (every deployment here runs one).
dump_options="${BACKUP_DUMP_OPTIONS---oplog}"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$dir"
# Written under a temporary name and renamed only when complete: a dump cut short never looks like a backup.
# shellcheck disable=SC2086  # the options are words
mongodump --uri="$MONGO_URI" --gzip --out="$dir/.partial-$stamp" $dump_options
mv "$dir/.partial-$stamp" "$dir/$stamp"
echo "backup: $dir/$stamp ($(du -sh "$dir/$stamp" | cut -f1))"

# Retention: complete dumps are named by their UTC time, so name order is age order.
find "$dir" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9]{8}T[0-9]{6}Z' -printf '%f\n' \
    | sort | head -n "-$keep" | while read -r old; do
        rm -rf "${dir:?}/$old"
        echo "backup: removed $old (older than the newest $keep)"
    done
# What a run that died left behind, once a day has passed.
find "$dir" -mindepth 1 -maxdepth 1 -type d -name '.partial-*' -mmin +1440 -exec rm -rf {} +
