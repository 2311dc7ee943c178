"""A TEST PEER, not part of foxxy-bridge: the Python `mcp` SDK (2.x) as the MCP client.

Usage: python_client.py BRIDGE_BIN CONFIG_PATH

Spawns `BRIDGE_BIN --config CONFIG_PATH stdio` over pipes (the way an MCP client
does), drives it against a config whose upstream is the rmcp fixture named `fix`,
and prints one JSON object on stdout summarising what it saw. The Rust test
(`tests/it/interop.rs`) asserts on that summary. `FOXXY_BRIDGE_HOME` is passed
through to the bridge so its state stays in the test's temporary directory.

Everything an assertion needs is recorded, nothing is checked here: a failure
inside a step is recorded as `{"error": "..."}` under that step, so one broken
feature does not hide the others.
"""

import json
import os
import sys

import anyio
import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

SAMPLED_TEXT = "sampled-by-python-client"


def texts(content):
    return [block.text for block in content if isinstance(block, types.TextContent)]


async def drive(bridge, config):
    summary = {"sampling_requests": []}

    async def sampling_callback(context, params):
        # Record what the upstream asked for, then answer with a fixed text.
        summary["sampling_requests"].append([_message_text(message) for message in params.messages])
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED_TEXT),
            model="python-test-model",
            stop_reason="endTurn",
        )

    env = {"FOXXY_BRIDGE_HOME": os.environ["FOXXY_BRIDGE_HOME"]}
    if "RUST_BACKTRACE" in os.environ:
        env["RUST_BACKTRACE"] = os.environ["RUST_BACKTRACE"]
    params = StdioServerParameters(command=bridge, args=["--config", config, "stdio"], env=env)

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, sampling_callback=sampling_callback) as session:
            init = await session.initialize()
            summary["server_name"] = init.server_info.name
            summary["protocol_version"] = init.protocol_version
            summary["capabilities"] = sorted(
                name for name, value in init.capabilities.model_dump(exclude_none=True).items() if value is not None
            )

            tools = await session.list_tools()
            summary["tools"] = sorted(tool.name for tool in tools.tools)

            summary["echo"] = await step(_call(session, "fix__echo", {"message": "from python"}))

            progress = []

            async def on_progress(value, total, message):
                progress.append({"progress": value, "total": total, "message": message})

            summary["slow"] = await step(
                _call(session, "fix__slow", {"steps": 3, "step_ms": 50}, progress_callback=on_progress)
            )
            summary["progress"] = progress

            summary["sample"] = await step(_call(session, "fix__sample", {"prompt": "hello from python"}))

            async def read():
                result = await session.read_resource("fixture://fix/static")
                return [
                    {"uri": str(contents.uri), "text": getattr(contents, "text", None)}
                    for contents in result.contents
                ]

            summary["resource"] = await step(read())

            async def prompt():
                result = await session.get_prompt("fix__greet", {"who": "Py"})
                return [_message_text(message) for message in result.messages]

            summary["prompt"] = await step(prompt())

            resources = await session.list_resources()
            summary["resources"] = sorted(str(resource.uri) for resource in resources.resources)
    return summary


def _message_text(message):
    content = message.content
    blocks = content if isinstance(content, list) else [content]
    return "".join(block.text for block in blocks if isinstance(block, types.TextContent))


async def _call(session, name, arguments, progress_callback=None):
    result = await session.call_tool(name, arguments, progress_callback=progress_callback)
    return {"is_error": bool(result.is_error), "text": "".join(texts(result.content))}


async def step(awaitable):
    """Run one step with a generous deadline; record an exception instead of raising."""
    try:
        with anyio.fail_after(60):
            return await awaitable
    except Exception as error:  # noqa: BLE001 - every failure is reported to the Rust test
        return {"error": f"{type(error).__name__}: {error}"}


def main():
    if len(sys.argv) != 3:
        print("usage: python_client.py BRIDGE_BIN CONFIG_PATH", file=sys.stderr)
        sys.exit(2)
    summary = anyio.run(drive, sys.argv[1], sys.argv[2])
    json.dump(summary, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
