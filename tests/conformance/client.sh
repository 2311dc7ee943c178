#!/bin/sh
# The client command the MCP conformance runner starts: it appends the server URL as
# the last argument and names the scenario in MCP_CONFORMANCE_SCENARIO. We write a
# one-upstream config for that URL and drive foxxy-bridge the way a user would.
set -eu
for url; do :; done
bridge="${FOXXY_BRIDGE_BIN:?FOXXY_BRIDGE_BIN must point at the foxxy-bridge binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FOXXY_BRIDGE_HOME="$work/home"
config="$work/config.json5"
printf '{ "mcpServers": { "up": { "url": "%s", "retryAttempts": 1 } } }\n' "$url" > "$config"
case "${MCP_CONFORMANCE_SCENARIO:-initialize}" in
  initialize) "$bridge" --config "$config" tools ;;
  tools_call) "$bridge" --config "$config" call up__add_numbers '{"a": 2, "b": 3}' ;;
  sse-retry) "$bridge" --config "$config" call up__test_reconnection '{}' ;;
  *) echo "client.sh: no driver for scenario ${MCP_CONFORMANCE_SCENARIO}" >&2; exit 1 ;;
esac
