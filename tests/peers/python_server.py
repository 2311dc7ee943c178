"""A TEST PEER, not part of foxxy-bridge: the Python `mcp` SDK (2.x) as an HTTP MCP server.

Usage: python_server.py {streamable-http|sse} [--port N] [--certfile C --keyfile K]

Serves, on 127.0.0.1 only:
  - tools `echo(message)` -> "py: {message}", `slow(steps)` (one progress notification
    per step, then "py: done {steps} steps") and `sample(prompt)` (asks the client's LLM
    through sampling, then "py: sampled: {text}");
  - the resource `py://static` ("static resource of py");
  - the prompt `greet(who)` ("Hello {who} from py").

Streamable HTTP is served at `/mcp`, legacy SSE at `/sse` (messages to `/messages/`).
With `--certfile`/`--keyfile` it serves HTTPS instead of HTTP.

The port defaults to 0: the script binds the socket itself, so the kernel picks a free
port with no race, and hands the bound socket to uvicorn. Once the socket is listening
it prints `FOXXY_LISTENING <port>` on stderr; the Rust tests (`tests/it/interop_http.rs`)
wait for that line and read the port from it.
"""

import argparse
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent

LOOPBACK = "127.0.0.1"

app = MCPServer("python-peer", version="1.0")


@app.tool()
def echo(message: str) -> str:
    """Echo the message back, prefixed with `py: `."""
    return f"py: {message}"


@app.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress once per step, then finish."""
    for step in range(steps):
        await anyio.sleep(0.05)
        await ctx.report_progress(step + 1, steps, f"py step {step + 1}")
    return f"py: done {steps} steps"


@app.tool()
async def sample(prompt: str, ctx: Context) -> str:
    """Ask the client's LLM (sampling/createMessage) and return what it said."""
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=32,
        system_prompt="You are the Python test peer.",
        # On the request's own stream, as the spec recommends for requests a tool makes.
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, TextContent) else repr(content)
    return f"py: sampled: {text}"


@app.resource("py://static", name="static", mime_type="text/plain")
def static() -> str:
    """A fixed text resource."""
    return "static resource of py"


@app.prompt()
def greet(who: str) -> str:
    """Greet someone."""
    return f"Hello {who} from py"


def listening_socket(port):
    """A TCP socket bound to 127.0.0.1:`port` and listening (so connections queue up
    before uvicorn starts accepting)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    sock.listen(128)
    return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["streamable-http", "sse"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")

    if args.transport == "sse":
        starlette_app = app.sse_app(host=LOOPBACK)
    else:
        starlette_app = app.streamable_http_app(host=LOOPBACK)
    config = uvicorn.Config(
        starlette_app,
        host=LOOPBACK,
        port=args.port,
        log_level="warning",
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
    )
    sock = listening_socket(args.port)
    print(f"FOXXY_LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
