# Shared by tools/bench, tools/bench-membership, tools/bench-soak and
# tools/bench-webhooks (sourced, not run): the output helpers, psql helpers on
# the throwaway cluster ($WORK socket, $PGPORT), waiting, the "Bench Doc"
# schema (3 "Bench Doc Item" rows per document), the DocType config block,
# the pgbench insert script, and the equality checks (counts + md5 over
# every replicated column). Each script defines its own fail().
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
note() { printf '   %s\n' "$*" >&2; }
psql_on() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PGPORT" -U postgres -d "$db" "$@"; }
q() { psql_on "$1" -tAc "$2"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  while :; do p=$((30000 + RANDOM % 25000)); port_free "$p" && port_free $((p + 1)) && break; done
  echo "$p"
}
wait_for() {  # wait_for SECONDS WHAT CMD...: until CMD succeeds, or fail
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.1
  done
}
rss_kb() {  # VmHWM (peak RSS) of a pid, in kB
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}
SCHEMA='
CREATE TABLE "tabBench Doc" (name text PRIMARY KEY, creation timestamptz DEFAULT now(),
  modified timestamptz DEFAULT now(), modified_by text, owner text,
  docstatus int NOT NULL DEFAULT 0, idx int, customer text NOT NULL, remarks text,
  grand_total numeric(18,6), net_total numeric(18,6), total_qty int, written_at timestamptz);
CREATE TABLE "tabBench Doc Item" (name text PRIMARY KEY, creation timestamptz DEFAULT now(),
  modified timestamptz DEFAULT now(), modified_by text, owner text,
  docstatus int NOT NULL DEFAULT 0, idx int, parent text, parenttype text,
  parentfield text, item_code text, qty numeric(18,6), rate numeric(18,6),
  amount numeric(18,6));
CREATE INDEX ON "tabBench Doc Item" (parent);'
# write_insert_sql FILE: one document (header + 3 rows) per transaction,
# numbered by sequence bench_ins; documents above :draft_from are drafts.
DOCNAME="'BD-' || lpad(:id::text, 9, '0')"
write_insert_sql() {
  cat > "$1" <<SQL
SELECT nextval('bench_ins') AS id \gset
\set r random(100, 9999999)
\set q1 random(1, 50)
\set q2 random(1, 50)
\set q3 random(1, 50)
BEGIN;
INSERT INTO "tabBench Doc" (name, owner, modified_by, docstatus, idx, customer, remarks, grand_total, net_total, total_qty, written_at)
  VALUES ($DOCNAME, 'bench', 'bench', CASE WHEN :id > :draft_from THEN 0 ELSE 1 END, 0,
          'CUST-' || (:r % 997), 'document ' || :id, :r * 1.17 / 1000, :r / 1000.0, :q1 + :q2 + :q3, clock_timestamp());
INSERT INTO "tabBench Doc Item" (name, owner, modified_by, docstatus, idx, parent, parenttype, parentfield, item_code, qty, rate, amount) VALUES
  ($DOCNAME || '-1', 'bench', 'bench', CASE WHEN :id > :draft_from THEN 0 ELSE 1 END, 1, $DOCNAME, 'Bench Doc', 'items', 'ITEM-' || (:r % 101), :q1, 12.5, :q1 * 12.5),
  ($DOCNAME || '-2', 'bench', 'bench', CASE WHEN :id > :draft_from THEN 0 ELSE 1 END, 2, $DOCNAME, 'Bench Doc', 'items', 'ITEM-' || (:r % 103), :q2, 7.125, :q2 * 7.125),
  ($DOCNAME || '-3', 'bench', 'bench', CASE WHEN :id > :draft_from THEN 0 ELSE 1 END, 3, $DOCNAME, 'Bench Doc', 'items', 'ITEM-' || (:r % 107), :q3, 0.333333, :q3 * 0.333333);
COMMIT;
SQL
}
HDR_COLS='name, docstatus, idx, customer, remarks, grand_total, net_total, total_qty, written_at'
ITEM_COLS='name, docstatus, idx, parent, parenttype, parentfield, item_code, qty, rate, amount'
# capture_installed DB: eventstream's capture of both Bench Doc tables is in
# place on DB: the publication's tables under $CAPTURE wal, else the triggers.
capture_installed() {
  if [ "${CAPTURE:-trigger}" = wal ]; then
    [ "$(q "$1" "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'eventstream'
                 AND tablename IN ('tabBench Doc', 'tabBench Doc Item')")" = 2 ]
    return
  fi
  [ "$(q "$1" "SELECT count(DISTINCT tgrelid) FROM pg_trigger WHERE NOT tgisinternal
               AND tgrelid IN ('\"tabBench Doc\"'::regclass, '\"tabBench Doc Item\"'::regclass)")" = 2 ]
}
# Cheap: counts and sums that every change moves.
fingerprint() {
  q "$1" "SELECT (SELECT count(*) || ':' || coalesce(sum(docstatus), 0) || ':' ||
                 coalesce(sum(extract(epoch FROM written_at)), 0) || ':' || coalesce(sum(grand_total), 0)
                 FROM \"tabBench Doc\") || '/' ||
                (SELECT count(*) || ':' || coalesce(sum(docstatus), 0) || ':' || coalesce(sum(qty), 0)
                 FROM \"tabBench Doc Item\")"
}
# Full: counts + md5 over every replicated column, in name order.
checksum() {
  q "$1" "SELECT (SELECT count(*) || ' ' || md5(coalesce(string_agg(ROW($HDR_COLS)::text, E'\n' ORDER BY name), ''))
                 FROM \"tabBench Doc\") || ' / ' ||
                (SELECT count(*) || ' ' || md5(coalesce(string_agg(ROW($ITEM_COLS)::text, E'\n' ORDER BY name), ''))
                 FROM \"tabBench Doc Item\")"
}
DOCTYPES='doctypes:
  - name: Bench Doc
    is_submittable: true
    fields:
      - {fieldname: customer, fieldtype: Data, reqd: true}
      - {fieldname: remarks, fieldtype: Text}
      - {fieldname: grand_total, fieldtype: Currency}
      - {fieldname: net_total, fieldtype: Currency}
      - {fieldname: total_qty, fieldtype: Int}
      - {fieldname: written_at, fieldtype: Datetime}
      - {fieldname: items, fieldtype: Table, options: Bench Doc Item}
  - name: Bench Doc Item
    istable: true
    fields:
      - {fieldname: item_code, fieldtype: Data}
      - {fieldname: qty, fieldtype: Float}
      - {fieldname: rate, fieldtype: Currency}
      - {fieldname: amount, fieldtype: Currency}'
# pgbench_run DB SCRIPT COUNT [-D var=value...] -> changes/s (wall clock,
# connections included); 4 clients; needs fail() and $PGBIN
pgbench_run() {
  local db=$1 script=$2 count=$3; shift 3
  local t0 t1
  t0=$(now)
  "$PGBIN/pgbench" -n -c 4 -j 4 -t $((count / 4)) -h "$WORK" -p "$PGPORT" -U postgres \
    -f "$WORK/$script" "$@" "$db" >"$WORK/pgbench.out" 2>&1 \
    || { cat "$WORK/pgbench.out" >&2; fail "pgbench $script on $db"; }
  t1=$(now)
  grep -q "actually processed: $count/$count" "$WORK/pgbench.out" \
    || { cat "$WORK/pgbench.out" >&2; fail "pgbench $script on $db did not run $count transactions"; }
  calc "$count / ($t1 - $t0)" 0
}
# insert_docs DB FIRST LAST: documents FIRST..LAST (submitted, 3 rows each)
# in one transaction, in one statement per table.
insert_docs() {
  q "$1" "BEGIN;
    INSERT INTO \"tabBench Doc\" (name, owner, modified_by, docstatus, idx, customer, remarks,
                                 grand_total, net_total, total_qty, written_at)
      SELECT 'BD-' || lpad(i::text, 9, '0'), 'bench', 'bench', 1, 0, 'CUST-' || (i % 997),
             'document ' || i, i * 1.17 / 1000, i / 1000.0, 7, clock_timestamp()
      FROM generate_series($2, $3) i;
    INSERT INTO \"tabBench Doc Item\" (name, owner, modified_by, docstatus, idx, parent,
                                      parenttype, parentfield, item_code, qty, rate, amount)
      SELECT 'BD-' || lpad(i::text, 9, '0') || '-' || k, 'bench', 'bench', 1, k,
             'BD-' || lpad(i::text, 9, '0'), 'Bench Doc', 'items', 'ITEM-' || (i % 101),
             k, 12.5, k * 12.5
      FROM generate_series($2, $3) i, generate_series(1, 3) k;
    COMMIT" >/dev/null
}
