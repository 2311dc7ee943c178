#!/bin/sh
# The client command the MCP conformance runner starts: it appends the server URL as
# the last argument, names the scenario in MCP_CONFORMANCE_SCENARIO and passes
# scenario data (e.g. pre-registered client credentials) as JSON in
# MCP_CONFORMANCE_CONTEXT. We write a one-upstream config for that URL and drive
# foxxy-bridge the way a user would. For auth scenarios the "browser" is the test
# fixture's scripted browser, which follows the authorization server's redirect into
# foxxy-bridge's callback listener.
set -eu
for url; do :; done
bridge="${FOXXY_BRIDGE_BIN:?FOXXY_BRIDGE_BIN must point at the foxxy-bridge binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FOXXY_BRIDGE_HOME="$work/home"
config="$work/config.json5"
scenario="${MCP_CONFORMANCE_SCENARIO:-initialize}"
oauth='{}'
case "$scenario" in
  auth/*)
    export FOXXY_BRIDGE_BROWSER="'${FOXXY_FIXTURE_BIN:?FOXXY_FIXTURE_BIN must point at the fixture server}' --browse-log '$work/browser.log' --browse"
    # Pre-registered credentials and a CIMD URL come from the scenario context.
    oauth=$(python3 -c '
import json, os
context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
oauth = {"client_name": "foxxy-bridge conformance"}
for key in ("client_id", "client_secret"):
    if context.get(key):
        oauth[key] = context[key]
oauth["client_metadata_url"] = context.get("client_metadata_url", "https://conformance-test.local/client-metadata.json")
print(json.dumps(oauth))
')
    ;;
esac
printf '{ "mcpServers": { "up": { "url": "%s", "retryAttempts": 1, "oauth": %s } }, "bridge": { "oauth_port": 0, "signInTimeout": 30 } }\n' "$url" "$oauth" > "$config"
case "$scenario" in
  initialize) "$bridge" --config "$config" tools ;;
  tools_call) "$bridge" --config "$config" call up__add_numbers '{"a": 2, "b": 3}' ;;
  sse-retry) "$bridge" --config "$config" call up__test_reconnection '{}' ;;
  auth/*)
    # List the tools, then call each of them once, like a client using the server.
    "$bridge" --config "$config" tools --json > "$work/tools.json"
    for tool in $(python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(open(sys.argv[1]))["tools"]))' "$work/tools.json"); do
      "$bridge" --config "$config" call "$tool" '{}' || true
    done
    ;;
  *) echo "client.sh: no driver for scenario ${scenario}" >&2; exit 1 ;;
esac
