"""A TEST PEER, not part of foxxy-bridge: the Python `mcp` SDK's low-level server listing
tools with fields rmcp does not model (`execution`), to check that the bridge passes a
tool object on as the upstream wrote it whichever way the answer travels.

Usage: json_tools_server.py {stdio|streamable-http-json}

- `stdio`: newline-delimited JSON-RPC on stdin/stdout (the direct view in the tests).
- `streamable-http-json`: streamable HTTP at `/mcp` on 127.0.0.1, answering every POST
  with one `application/json` body instead of an SSE stream. The port is picked by the
  kernel and printed on stderr as `FOXXY_LISTENING <port>` once the socket listens.
"""

import argparse
import socket
import sys

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

LOOPBACK = "127.0.0.1"

TOOLS = [
    types.Tool(
        name="later",
        description="A tool that may run as a task.",
        input_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
        execution=types.ToolExecution(task_support="optional"),
        meta={"example.com/vendor": {"tier": 2}},
    ),
    types.Tool(name="plain", input_schema={"type": "object"}),
]


async def list_tools(_ctx, _params):
    return types.ListToolsResult(tools=TOOLS)


server = Server("json-tools", version="1.0", on_list_tools=list_tools)


async def serve_stdio():
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["stdio", "streamable-http-json"])
    args = parser.parse_args()
    if args.transport == "stdio":
        anyio.run(serve_stdio)
        return
    app = server.streamable_http_app(json_response=True, host=LOOPBACK)
    config = uvicorn.Config(app, host=LOOPBACK, port=0, log_level="warning")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    print(f"FOXXY_LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
