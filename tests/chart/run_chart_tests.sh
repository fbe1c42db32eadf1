#!/usr/bin/env bash
# Chart and image tests (ctest: chart_tests). Usage:
#   tests/chart/run_chart_tests.sh [BUILD_DIR]      (default: build)
#
# 1. Image: every shared library eventstream-producer / -consumer load (ldd)
#    belongs to a Debian package the runtime stage of k8s/Dockerfile installs,
#    to a dependency of one (apt-cache depends --recurse), or to the base
#    image's libc6 / libstdc++6 / libgcc-s1. (Docker itself cannot run here.)
# 2. Chart: renders k8s/charts/eventstream with `helm template` when helm is
#    installed, else with ../shared/tools/helm-render (built once into
#    BUILD_DIR/tools/ from Debian's Go packages; tools/setup installs them),
#    for the examples (k8s/examples/*-values.yaml) and the edge values in
#    tests/chart/values/; validates the manifests with the npm package
#    kubernetes-models (installed once into BUILD_DIR/tools/k8s-validate);
#    feeds the rendered ConfigMap's config.yaml to `--check-config` of each
#    binary whose section is enabled (and checks the other one refuses it);
#    and checks that bad values fail at render time naming the key.
# With no renderer at all, the chart part prints SKIP and the script exits 77
# (ctest: skipped) unless something else failed.
set -uo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$(cd "${1:-$SRC/build}" && pwd) || { echo "no build dir ${1:-}"; exit 2; }
BIN=$BUILD_DIR/bin
CHART=$SRC/k8s/charts/eventstream
CASES=$SRC/tests/chart/values
HELM_RENDER_SRC=${HELM_RENDER_SRC:-$SRC/../shared/tools/helm-render}
TOOLS=$BUILD_DIR/tools
WORK=$(mktemp -d /tmp/es-chart-tests.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

failures=0
skipped=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }
skip() { echo "SKIP $*"; skipped=$((skipped + 1)); }
start=$(date +%s)

# ---- 1. image: runtime packages cover ldd --------------------------------

# "PATH PACKAGE" for each library path on stdin (PACKAGE empty if none owns
# it). With merged /usr, ldd prints /lib/... while dpkg may have recorded
# /usr/lib/... (or the versioned file a symlink points to), so each spelling
# is looked up, all at once in dpkg's file lists (one dpkg -S per path would
# take seconds).
packages_of() {
  local info=/var/lib/dpkg/info p r
  local -a paths=()
  while read -r p; do paths+=("$p"); done
  local owners
  owners=$(cd "$info" && for p in "${paths[@]}"; do
             r=$(readlink -f "$p"); printf '%s\n' "$p" "/usr$p" "$r" "${r#/usr}"
           done | sort -u | grep -xF -f - -- *.list 2>/dev/null)
  # owners: "libpq5:amd64.list:/usr/lib/x86_64-linux-gnu/libpq.so.5"
  declare -A by_path=()
  local line pkg path
  while IFS= read -r line; do
    pkg=${line%%.list:*}; path=${line#*.list:}
    by_path[$path]=${pkg%%:*}
  done <<<"$owners"
  for p in "${paths[@]}"; do
    r=$(readlink -f "$p"); pkg=""
    for c in "$p" "/usr$p" "$r" "${r#/usr}"; do
      if [ -n "${by_path[$c]:-}" ]; then pkg=${by_path[$c]}; break; fi
    done
    echo "$p $pkg"
  done
}

check_image() {
  local dockerfile=$SRC/k8s/Dockerfile
  if ! command -v dpkg >/dev/null; then skip "image: no dpkg here"; return; fi
  for b in producer consumer; do
    if [ ! -x "$BIN/eventstream-$b" ]; then bad "image: $BIN/eventstream-$b not built"; return; fi
  done
  # The runtime stage: everything after the last FROM. Its apt-get install
  # words (continuation lines joined) that look like package names.
  local installed
  installed=$(awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END{printf "%s", stage}' "$dockerfile" |
    sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' | grep -E 'apt-get[^&]*install' |
    sed -E 's/.*apt-get[^&]*install//; s/&&.*//' | tr ' ' '\n' |
    grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u)
  if [ -z "$installed" ]; then bad "image: no apt-get install line in the runtime stage of $dockerfile"; return; fi
  # What those packages pull in (Depends and Pre-Depends, recursively).
  local closure=""
  if command -v apt-cache >/dev/null; then
    # shellcheck disable=SC2086
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances $installed 2>/dev/null |
      sed -nE 's/^ *(Pre)?Depends: ([^ <>]+).*/\2/p; s/^([a-z0-9][^ ]*)$/\1/p' |
      sed 's/:any$//' | sort -u)
  fi
  local pkg lib missing=0 n=0
  declare -A seen=()
  while read -r lib pkg; do
    n=$((n + 1))
    if [ -z "$pkg" ]; then
      bad "image: $lib (from ldd) belongs to no Debian package; the image cannot provide it"
      missing=$((missing + 1)); continue
    fi
    [ -n "${seen[$pkg]:-}" ] && continue
    seen[$pkg]=1
    case " libc6 libstdc++6 libgcc-s1 " in *" $pkg "*) continue ;; esac
    if grep -qxF "$pkg" <<<"$installed"; then continue; fi
    if [ -n "$closure" ] && grep -qxF "$pkg" <<<"$closure"; then continue; fi
    bad "image: $lib is in package $pkg, which the runtime stage of k8s/Dockerfile neither installs nor gets as a dependency: add $pkg to its apt-get install line"
    missing=$((missing + 1))
  done < <(ldd "$BIN/eventstream-producer" "$BIN/eventstream-consumer" | awk '/=> \//{print $3}' | sort -u | packages_of)
  [ "$missing" -eq 0 ] && ok "image: the ${#seen[@]} packages of $n ldd libraries are covered by the runtime stage ($(echo $installed | tr '\n' ' '))"
}

# ---- 2. chart --------------------------------------------------------------

RENDER=()     # the renderer command: helm template | helm-render

find_renderer() {
  if command -v helm >/dev/null; then RENDER=(helm template); echo "renderer: $(command -v helm) template"; return 0; fi
  local hr=$TOOLS/helm-render
  if [ ! -x "$hr" ]; then
    if [ ! -f "$HELM_RENDER_SRC/build.sh" ]; then
      skip "chart: neither helm nor $HELM_RENDER_SRC/build.sh is available; chart not rendered"; return 1
    fi
    # build.sh would apt-get the Go packages itself; a test must not.
    if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/Masterminds/sprig ]; then
      skip "chart: no helm, and helm-render's Go packages are missing (run tools/setup); chart not rendered"; return 1
    fi
    mkdir -p "$TOOLS"
    echo "building helm-render into $hr (once, ~30 s)"
    if ! sh "$HELM_RENDER_SRC/build.sh" "$hr.tmp" >"$WORK/build.log" 2>&1; then
      cat "$WORK/build.log"; bad "chart: building helm-render failed"; return 1
    fi
    mv "$hr.tmp" "$hr"
  fi
  RENDER=("$hr"); echo "renderer: $hr"
  return 0
}

VALIDATE=()   # node k8s-validate.js, when its npm packages can be had
find_validator() {
  local dir=$TOOLS/k8s-validate js=$HELM_RENDER_SRC/k8s-validate.js
  if [ ! -f "$js" ]; then skip "validate: $js not found"; return; fi
  if ! command -v node >/dev/null; then skip "validate: node is not installed (tools/setup installs it)"; return; fi
  if [ ! -d "$dir/node_modules/kubernetes-models" ] || [ ! -d "$dir/node_modules/js-yaml" ]; then
    if ! command -v npm >/dev/null; then skip "validate: npm is not installed"; return; fi
    echo "installing kubernetes-models@4 js-yaml@4 into $dir (once)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    if ! (cd "$dir.tmp" && npm init -y >/dev/null 2>&1 &&
          npm install --no-fund --no-audit --loglevel=error kubernetes-models@4 js-yaml@4 >"$WORK/npm.log" 2>&1); then
      cat "$WORK/npm.log"; skip "validate: npm install kubernetes-models failed (registry unreachable?)"
      rm -rf "$dir.tmp"; return
    fi
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  VALIDATE=(env "K8S_VALIDATE_DIR=$dir" node "$js")
}

render() {  # render RELEASE NAMESPACE [renderer args...] > manifests
  local rel=$1 ns=$2; shift 2
  "${RENDER[@]}" "$rel" "$CHART" -n "$ns" "$@"
}

# config.yaml of the rendered ConfigMap (the chart writes it as a block
# scalar indented by 4 under `  config.yaml: |`).
extract_config() {
  awk '/^kind: ConfigMap/{cm=1} /^---/{cm=0; inblk=0}
       cm && /^  config\.yaml: \|/{inblk=1; next}
       inblk && /^    /{print substr($0, 5); next}
       inblk && /^$/{print ""; next}
       inblk{inblk=0}' "$1"
}

# A values set that must render, validate and pass --check-config.
#   good NAME RELEASE NAMESPACE "producer consumer" renderer-args...
good() {
  local name=$1 rel=$2 ns=$3 sections=$4; shift 4
  local out=$WORK/$name.yaml cfg=$WORK/$name.config.yaml
  if ! render "$rel" "$ns" "$@" >"$out" 2>"$WORK/$name.err"; then
    bad "$name: render failed: $(cat "$WORK/$name.err")"; return
  fi
  local kinds
  kinds=$(grep -E '^kind: ' "$out" | sed 's/kind: //' | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=" "}')
  ok "$name: rendered ($kinds)"
  if [ ${#VALIDATE[@]} -gt 0 ]; then
    if "${VALIDATE[@]}" "$out" >"$WORK/$name.validate" 2>&1; then
      ok "$name: kubernetes-models: $(tail -1 "$WORK/$name.validate")"
    else
      cat "$WORK/$name.validate"; bad "$name: kubernetes-models validation"
    fi
  fi
  # Structural checks the OpenAPI schemas cannot make.
  for s in producer consumer; do
    local dep
    dep=$(grep -c "command: \[\"eventstream-$s\"\]" "$out")
    if [[ " $sections " == *" $s "* ]]; then
      [ "$dep" = 1 ] || bad "$name: expected one eventstream-$s container, found $dep"
    else
      [ "$dep" = 0 ] || bad "$name: $s is disabled but a container runs eventstream-$s"
    fi
  done
  local n_deploy n_probe n_sum
  n_deploy=$(grep -c '^kind: Deployment' "$out")
  n_probe=$(grep -cE '^ +(grpc|tcpSocket):$' "$out")
  n_sum=$(grep -c 'checksum/config: [0-9a-f]\{64\}' "$out")
  [ "$n_probe" = $((2 * n_deploy)) ] || bad "$name: $n_deploy Deployments but $n_probe probes"
  [ "$n_sum" = "$n_deploy" ] || bad "$name: $n_deploy Deployments but $n_sum checksum/config annotations"
  # Secrets are referenced, never inlined: every ES_* env entry is valueFrom.
  local inline
  inline=$(awk '/^ +- name: ES_/{n=$3; next} n && !/^ +valueFrom:/{print n} {n=""}' "$out")
  [ -z "$inline" ] || bad "$name: env vars set inline instead of valueFrom.secretKeyRef: $inline"
  # The rendered config file, checked by the binaries themselves.
  extract_config "$out" >"$cfg"
  if ! grep -q '^site:' "$cfg"; then bad "$name: no config.yaml found in the rendered ConfigMap"; return; fi
  for s in producer consumer; do
    local msg rc
    msg=$("$BIN/eventstream-$s" --check-config --config "$cfg" 2>&1); rc=$?
    if [[ " $sections " == *" $s "* ]]; then
      if [ $rc -eq 0 ]; then ok "$name: eventstream-$s --check-config accepts the rendered config"
      else bad "$name: eventstream-$s --check-config (exit $rc): $msg"; fi
    else
      if [ $rc -ne 0 ] && grep -q "$s" <<<"$msg"; then ok "$name: eventstream-$s refuses it (no $s section): $msg"
      else bad "$name: eventstream-$s should refuse a config without $s (exit $rc): $msg"; fi
    fi
  done
}

# A values set that must fail at render time with a message matching REGEX.
#   fails NAME REGEX renderer-args...
fails() {
  local name=$1 want=$2; shift 2
  local msg
  if msg=$(render bad bad "$@" 2>&1 >/dev/null); then
    bad "$name: rendered, but should have failed (expected /$want/)"; return
  fi
  if grep -qE -- "$want" <<<"$msg"; then
    ok "$name: refused at render time: $(grep -E -- "$want" <<<"$msg" | head -1 | sed 's/^ *//; s/.*error calling fail: //')"
  else
    bad "$name: failed, but the message does not match /$want/: $msg"
  fi
}

check_chart() {
  find_renderer || return
  find_validator
  for b in producer consumer; do
    [ -x "$BIN/eventstream-$b" ] || { bad "chart: $BIN/eventstream-$b not built"; return; }
  done
  local ex=$SRC/k8s/examples
  good hq          eventstream hq      "producer consumer" -f "$ex/hq-values.yaml"
  good branch1     eventstream branch1 "producer consumer" -f "$ex/branch1-values.yaml"
  good producer-only  hq     hq      "producer" -f "$CASES/producer-only.yaml"
  good consumer-only  es     branch2 "consumer" -f "$CASES/consumer-only.yaml"
  good existing-secret eventstream branch3 "producer consumer" -f "$CASES/existing-secret.yaml"
  # The config test file that uses every key of libsync/config/config.h, as values:
  # the values schema accepts all of the config schema.
  good config-full eventstream branch1 "producer consumer" -f "$SRC/tests/testdata/config/full.yaml" \
    --set existingSecret=eventstream-secrets \
    --set producerDeployment.tlsSecret=eventstream-tls --set consumerDeployment.tlsSecret=eventstream-tls
  # TLS: each Deployment mounts its certificate Secret and, serving TLS, is
  # probed by TCP (the kubelet's gRPC probe speaks no TLS).
  good tls eventstream branch4 "producer consumer" -f "$CASES/tls.yaml"
  local n_tcp n_grpc n_mount
  n_tcp=$(grep -cE '^ +tcpSocket:$' "$WORK/tls.yaml")
  n_grpc=$(grep -cE '^ +grpc:$' "$WORK/tls.yaml")
  n_mount=$(grep -cE '^ +mountPath: /etc/eventstream-tls$' "$WORK/tls.yaml")
  if [ "$n_tcp" = 4 ] && [ "$n_grpc" = 0 ] && [ "$n_mount" = 2 ] &&
     grep -q 'secretName: branch4-producer-tls' "$WORK/tls.yaml" &&
     grep -q 'secretName: branch4-consumer-tls' "$WORK/tls.yaml"; then
    ok "tls: both Deployments mount their certificate Secret at /etc/eventstream-tls and are probed by TCP"
  else
    bad "tls: expected 4 tcpSocket probes, 0 gRPC probes, 2 mounts of /etc/eventstream-tls and both Secrets; found $n_tcp, $n_grpc, $n_mount"
  fi
  n_grpc=$(grep -cE '^ +grpc:$' "$WORK/hq.yaml")
  [ "$n_grpc" = 4 ] && ok "hq (plaintext): both Deployments keep their gRPC probes" ||
    bad "hq (plaintext): expected 4 gRPC probes, found $n_grpc"
  # The examples follow each other: each site's consumer names the other's
  # producer Service, and each producer pre-approves the other site.
  grep -q 'url: eventstream-producer.branch1.svc.cluster.local:50051' "$WORK/hq.config.yaml" &&
  grep -q 'url: eventstream-producer.hq.svc.cluster.local:50051' "$WORK/branch1.config.yaml" &&
  grep -q '^  name: eventstream-producer$' "$WORK/hq.yaml" &&
    ok "examples: hq and branch1 follow each other's producer Services" ||
    bad "examples: hq and branch1 do not point at each other's producer Services"
  # config-full: runtime webhooks' allowed variables (runtime_secret_env) are
  # filled from the Secret by name; a NAME_* prefix cannot be, and is not.
  grep -q '^ *- name: ES_WEBHOOK_CRM_TOKEN$' "$WORK/config-full.yaml" &&
  ! grep -q '^ *- name: ES_HOOK_' "$WORK/config-full.yaml" &&
    ok "config-full: runtime_secret_env's name ES_WEBHOOK_CRM_TOKEN comes from the Secret, the prefix ES_HOOK_* does not" ||
    bad "config-full: expected an env entry for ES_WEBHOOK_CRM_TOKEN (runtime_secret_env) and none for the ES_HOOK_* prefix"
  # existing-secret: ES_DATABASE_URL and every named variable come from it.
  local refs
  refs=$(grep -A3 -E '^ +- name: ES_' "$WORK/existing-secret.yaml" | grep -c 'name: "branch3-eventstream"')
  [ "$refs" = 5 ] && ok "existing-secret: 5 env vars from Secret branch3-eventstream (DB URL x2, ES_KEY_HQ, ES_KEY_OPS, ES_TOKEN_HQ)" ||
    bad "existing-secret: expected 5 secretKeyRefs to branch3-eventstream, found $refs"

  # Bad values: refused by values.schema.json (or the templates), naming the key.
  fails subscription-without-doctype 'consumer[./]producers[./]0[./]doctypes[./]0.*doctype' -f "$CASES/bad-subscription-no-doctype.yaml"
  fails mapping-without-doctype 'consumer[./]mappings[./]0.*(local|remote)_doctype' -f "$CASES/bad-mapping-no-doctype.yaml"
  fails no-site-name 'site[./]name' -f "$CASES/bad-subscription-no-doctype.yaml" --set site.name=
  fails unknown-key 'consumers|additional propert' -f "$CASES/consumer-only.yaml" --set consumer.consumers=x
  fails bad-status 'status' -f "$ex/hq-values.yaml" --set 'producer.consumers[0].doctypes[0].status=maybe'
  fails bad-fieldtype 'fieldtype' -f "$ex/hq-values.yaml" --set 'doctypes[0].fields[0].fieldtype=Strng'
  fails both-disabled 'both false' -f "$CASES/consumer-only.yaml" --set consumer.enabled=false
  fails secret-without-source 'environment variable ES_KEY_HQ' -f "$ex/branch1-values.yaml" --set existingSecret= --set database.url=postgresql:///branch1
  fails db-url-without-source 'database.url' -f "$CASES/existing-secret.yaml" --set existingSecret=
  fails runtime-secret-env-star 'runtime_secret_env' -f "$ex/hq-values.yaml" --set 'producer.webhook_delivery.runtime_secret_env[0]=*'
  fails tls-without-certificates 'producer.tls is set but no certificate files are mounted' -f "$CASES/tls.yaml" --set producerDeployment.tlsSecret=
  fails tls-bad-refresh 'refresh_interval' -f "$CASES/tls.yaml" --set producer.tls.refresh_interval=soon
  fails tls-unknown-key 'tls|additional propert' -f "$CASES/tls.yaml" --set consumer.tls.ca_file=/x
}

# ---- 3. values.schema.json is generated and in step with the C++ --------

check_schema() {
  local schema=$CHART/values.schema.json
  if ! command -v python3 >/dev/null; then skip "schema: no python3 to regenerate values.schema.json"; return; fi
  if python3 "$SRC/tests/chart/gen_values_schema.py" | cmp -s - "$schema"; then
    ok "schema: values.schema.json is what tests/chart/gen_values_schema.py generates"
  else
    bad "schema: values.schema.json differs from tests/chart/gen_values_schema.py's output (regenerate it)"
  fi
  # The fieldtype enum must be libsync's KnownFieldtypes().
  local cxx json
  cxx=$(sed -n '/kTypes = new std::vector/,/};/p' "$SRC/libsync/model/doctype.cc" | grep -o '"[^"]*"' | tr -d '"' | sort)
  json=$(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1]))["definitions"]["field"]["properties"]["fieldtype"]["enum"])))' "$schema")
  if [ -n "$cxx" ] && [ "$cxx" = "$json" ]; then
    ok "schema: fieldtype enum = KnownFieldtypes() of libsync/model/doctype.cc ($(wc -l <<<"$cxx") types)"
  else
    bad "schema: fieldtype enum differs from KnownFieldtypes() in libsync/model/doctype.cc: $(diff <(echo "$cxx") <(echo "$json") | grep '^[<>]' | tr '\n' ' ')"
  fi
}

check_image
check_schema
check_chart
echo "chart tests: $failures failed, $skipped skipped, $(( $(date +%s) - start )) s"
[ "$failures" -eq 0 ] || exit 1
[ "$skipped" -eq 0 ] || exit 77
exit 0
