"""A TEST PEER, not part of foxxy-bridge: a stdio MCP server written by hand (standard
library only, no SDK), whose tools answer with results no SDK server would write as
they are: fields and content types from other protocol versions, shapes that an SDK
normalizes. The Rust test
`interop::a_hand_written_servers_results_reach_a_pre_2026_client_in_its_shape` checks
what the bridge makes of each.

Usage: results_server.py   (newline-delimited JSON-RPC on stdin/stdout)

Each tool's result is `RESULTS[name]`, sent as written. The tool `burst` sends three
progress notifications and its result in one write, so that they reach the bridge
together. The tool `params` answers with the request it received (its id and params,
as JSON text), so a test can see what the bridge forwarded.
"""

import json
import sys

RESULTS = {
    # Already in a pre-2026 client's shape, with fields and a content type rmcp does not
    # know: the client should get it unchanged.
    "verbatim": {
        "content": [
            {"type": "text", "text": "caf\u00e9 \u2603", "x-block-extra": 1},
            {"type": "hologram", "frames": 3},
        ],
        "isError": False,
        "_meta": {"k": "v"},
        "x-result-extra": [1, {"a": None}],
    },
    # 2026-07-28 shapes that a pre-2026 client must not see.
    "complete": {"resultType": "complete", "content": [{"type": "text", "text": "c"}]},
    "listed": {"content": [], "structuredContent": [1, 2]},
    # No `content` at all.
    "bare": {"isError": True},
}


def reply(message_id, result=None, error=None):
    message = {"jsonrpc": "2.0", "id": message_id}
    if error is None:
        message["result"] = result
    else:
        message["error"] = error
    sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def burst(message_id, params):
    token = (params.get("_meta") or {}).get("progressToken")
    lines = [
        {"jsonrpc": "2.0", "method": "notifications/progress",
         "params": {"progressToken": token, "progress": step, "total": 3}}
        for step in (1, 2, 3)
        if token is not None
    ]
    lines.append({"jsonrpc": "2.0", "id": message_id, "result": {"content": [{"type": "text", "text": "burst"}]}})
    sys.stdout.write("".join(json.dumps(line) + "\n" for line in lines))
    sys.stdout.flush()


def main():
    while line := sys.stdin.readline():
        if not line.strip():
            continue
        message = json.loads(line)
        method, message_id = message.get("method"), message.get("id")
        if message_id is None or method is None:
            continue  # notifications and responses
        params = message.get("params") or {}
        if method == "initialize":
            reply(message_id, {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "results", "version": "1"},
            })
        elif method == "tools/list":
            names = [*RESULTS, "fails", "burst", "params"]
            tools = [{"name": name, "inputSchema": {"type": "object"}} for name in names]
            reply(message_id, {"tools": tools})
        elif method == "tools/call" and params.get("name") in RESULTS:
            reply(message_id, RESULTS[params["name"]])
        elif method == "tools/call" and params.get("name") == "burst":
            burst(message_id, params)
        elif method == "tools/call" and params.get("name") == "params":
            seen = json.dumps({"id": message_id, "params": params}, ensure_ascii=False)
            reply(message_id, {"content": [{"type": "text", "text": seen}]})
        elif method == "tools/call" and params.get("name") == "fails":
            reply(message_id, error={"code": -32001, "message": "it failed", "data": {"why": "asked to"}})
        elif method == "ping":
            reply(message_id, {})
        else:
            reply(message_id, error={"code": -32601, "message": f"no method {method}"})


if __name__ == "__main__":
    main()
