# The README's main job from a notebook cell: a team of agents builds and hardens a web server.
from orchestrator.sdk import start_local

api = start_local()  # Ray head + the HTTP API on 127.0.0.1 (or the ones running already)
task = api.start_workflow("examples/web_server.yaml").wait()  # a progress bar while it runs
print(task.state.value, task.result)
task.download_artifacts("out/web_server-artifacts.zip")  # result, timeline, screenshots, files
api.agent(task.info.agent_id).screenshot()  # the admin's desktop, shown inline
