"""A minimal MCP server over stdio for the fidelity tests: it records every message it
receives and answers from a JSON description, so a test can see exactly what reaches an
upstream and serve exactly the objects it wants (unknown fields included).

    python recording_server.py LOG_FILE DESCRIPTION_JSON

LOG_FILE gets one line per message received, as received. DESCRIPTION_JSON is an object:
  "instructions": string (optional), "capabilities": the server capabilities
  (default {"tools": {}}), "tools", "prompts", "resources": what the lists return
  (default []).
Requests: initialize (echoes the client's protocol version), ping, tools/list,
tools/call (text "called NAME"), prompts/list, resources/list,
resources/templates/list (empty); anything else gets -32601.
A tools/call with "task" creates task "task-N" (N counts from 1 in each process): the
answer is its CreateTaskResult, then a notifications/tasks/status says it completed.
tasks/get and tasks/cancel answer with the task, tasks/result with a text result
naming it, tasks/list with every task; an unknown task id gets -32602. With
"exit_after_task": true the server exits right after creating a task; with
"result_delay_ms": N, tasks/result answers N ms late. With "ask_client": {"method",
"params"} (or a list of them, one per tools/call in turn), a tools/call first sends that
request to the client (id "ask-N") and
answers, once the client has, with a text result holding the client's answer as JSON
(a JSON-RPC error from the client becomes the text "error: " and its message).
With "failing": ["METHOD", ...], those methods get -32603 "METHOD failed on purpose".
"""

import json
import sys
import time


def main() -> None:
    log_path, description = sys.argv[1], json.loads(sys.argv[2])
    capabilities = description.get("capabilities", {"tools": {}})
    tasks = {}
    waiting = {}  # our request id -> the id of the tools/call that waits for its answer
    asked = 0
    with open(log_path, "a", encoding="utf-8") as log:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            log.write(line + "\n")
            log.flush()
            message = json.loads(line)
            if "method" not in message and message.get("id") in waiting:
                call_id = waiting.pop(message["id"])
                if "error" in message:
                    text = "error: " + message["error"].get("message", "")
                else:
                    text = json.dumps(message.get("result"), sort_keys=True)
                reply = {"jsonrpc": "2.0", "id": call_id, "result": {"content": [{"type": "text", "text": text}]}}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
                continue
            if "id" not in message or "method" not in message:
                continue
            method, params = message["method"], message.get("params") or {}
            result = None
            if method in description.get("failing", []):
                reply = {"jsonrpc": "2.0", "id": message["id"],
                         "error": {"code": -32603, "message": method + " failed on purpose"}}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
                continue
            if method == "tools/call" and "ask_client" in description and "task" not in params:
                asked += 1
                ask_id = "ask-%d" % asked
                waiting[ask_id] = message["id"]
                asks = description["ask_client"]
                asks = asks if isinstance(asks, list) else [asks]
                ask = dict(asks[(asked - 1) % len(asks)], jsonrpc="2.0", id=ask_id)
                sys.stdout.write(json.dumps(ask) + "\n")
                sys.stdout.flush()
                continue
            if method == "initialize":
                result = {
                    "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                    "capabilities": capabilities,
                    "serverInfo": {"name": "recording", "version": "1"},
                }
                if "instructions" in description:
                    result["instructions"] = description["instructions"]
            elif method == "ping":
                result = {}
            elif method == "tools/list":
                result = {"tools": description.get("tools", [])}
            elif method == "tools/call" and "task" in params:
                task_id = "task-%d" % (len(tasks) + 1)
                tasks[task_id] = {"taskId": task_id, "status": "working", "createdAt": "2026-01-01T00:00:00Z",
                                  "lastUpdatedAt": "2026-01-01T00:00:00Z", "ttl": 60000}
                reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"task": dict(tasks[task_id])}}
                sys.stdout.write(json.dumps(reply) + "\n")
                if description.get("exit_after_task"):
                    sys.stdout.flush()
                    return
                tasks[task_id]["status"] = "completed"
                status = {"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": dict(tasks[task_id])}
                sys.stdout.write(json.dumps(status) + "\n")
                sys.stdout.flush()
                continue
            elif method in ("tasks/get", "tasks/cancel", "tasks/result") and params.get("taskId") not in tasks:
                reply = {"jsonrpc": "2.0", "id": message["id"],
                         "error": {"code": -32602, "message": "unknown task " + str(params.get("taskId"))}}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
                continue
            elif method in ("tasks/get", "tasks/cancel"):
                result = tasks[params["taskId"]]
            elif method == "tasks/result":
                time.sleep(description.get("result_delay_ms", 0) / 1000)
                related = {"io.modelcontextprotocol/related-task": {"taskId": params["taskId"]}}
                result = {"content": [{"type": "text", "text": "result of " + params["taskId"]}], "_meta": related}
            elif method == "tasks/list":
                result = {"tasks": list(tasks.values())}
            elif method == "tools/call":
                result = {"content": [{"type": "text", "text": "called " + params.get("name", "")}]}
            elif method == "prompts/list":
                result = {"prompts": description.get("prompts", [])}
            elif method == "resources/list":
                result = {"resources": description.get("resources", [])}
            elif method == "resources/templates/list":
                result = {"resourceTemplates": []}
            if result is None:
                reply = {"jsonrpc": "2.0", "id": message["id"],
                         "error": {"code": -32601, "message": "method not found: " + method}}
            else:
                reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
