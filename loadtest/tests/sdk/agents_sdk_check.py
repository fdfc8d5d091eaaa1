"""The official `azure-ai-agents` SDK against the edge, with the attendee key as its credential:
an agent, a thread, a message, a streamed run, listing, deleting; and the `openai` SDK's Responses
API, for a model and for an agent. A second attendee's clients are refused the first attendee's
agent, thread and responses (403), and every list shows each attendee only their own objects.
Only configuration is ours: the endpoint, and an authentication policy that sends the attendee key
(azure-core refuses bearer tokens over plain http)."""
import json
import os
import urllib.request

import openai
from azure.ai.agents import AgentsClient
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from openai import OpenAI

base = os.environ["AIPROXY_EDGE_API"]  # <edge>/api/v1
key = os.environ["AIPROXY_KEY"]
other_key = os.environ["AIPROXY_OTHER_KEY"]


class AttendeeKey(SansIOHTTPPolicy):
    def __init__(self, key):
        super().__init__()
        self.key = key

    def on_request(self, request):
        request.http_request.headers["api-key"] = self.key


class Unused:
    def get_token(self, *scopes, **kwargs):
        raise RuntimeError("the attendee key is sent by the policy")


def client(key):
    return AgentsClient(endpoint=base, credential=Unused(), authentication_policy=AttendeeKey(key))


def refused(attempt, kind):
    """`attempt` must fail with the edge's 403 for another attendee's `kind`."""
    try:
        attempt()
    except (HttpResponseError, openai.PermissionDeniedError) as e:
        status = getattr(e, "status_code", None)
        assert status == 403, (kind, status, e)
        assert f"Unauthorized access to {kind}." in str(e), e
        return
    raise SystemExit(f"another attendee reached the {kind}")


agents = client(key)
agent = agents.create_agent(model="gpt-4o", name="helper", instructions="Be brief.")
assert agent.id, agent
thread = agents.threads.create()
message = agents.messages.create(thread_id=thread.id, role="user", content="Hello")
assert message.id

event_types = []
with agents.runs.stream(thread_id=thread.id, agent_id=agent.id) as stream:
    for event_type, _data, _raw in stream:
        event_types.append(event_type)
assert "thread.run.created" in event_types and "thread.run.completed" in event_types, event_types

texts = [m.content[0].text.value for m in agents.messages.list(thread_id=thread.id)]
assert "Hello from the mock agent." in texts, texts

mine = [a.id for a in agents.list_agents()]
assert mine == [agent.id], mine

intruder = client(other_key)
assert [a.id for a in intruder.list_agents()] == [], "another attendee sees nothing"
try:
    intruder.get_agent(agent.id)
    raise SystemExit("another attendee could read the agent")
except Exception as e:  # azure.core.exceptions.HttpResponseError
    assert "Unauthorized access to agent." in str(e), e

# Isolation: the intruder works with their own objects, and is refused the first attendee's.
own_agent = intruder.create_agent(model="gpt-4o", name="intruder", instructions="Mine.")
own_thread = intruder.threads.create()
refused(lambda: intruder.update_agent(agent.id, instructions="Now mine."), "agent")
refused(lambda: intruder.delete_agent(agent.id), "agent")
refused(lambda: intruder.threads.get(thread.id), "thread")
refused(lambda: list(intruder.messages.list(thread_id=thread.id)), "thread")
refused(lambda: intruder.messages.create(thread_id=thread.id, role="user", content="Hi"), "thread")
refused(lambda: intruder.runs.create(thread_id=own_thread.id, agent_id=agent.id), "agent")
refused(lambda: intruder.runs.create(thread_id=thread.id, agent_id=own_agent.id), "thread")
own_run = intruder.runs.create(thread_id=own_thread.id, agent_id=own_agent.id)
assert own_run.thread_id == own_thread.id, own_run
assert [a.id for a in intruder.list_agents()] == [own_agent.id]
assert [a.id for a in agents.list_agents()] == [agent.id]
assert [t.id for t in intruder.threads.list()] == [own_thread.id]
assert [t.id for t in agents.threads.list()] == [thread.id]
assert agents.get_agent(agent.id).instructions == "Be brief.", "the agent is unchanged"

agents.delete_agent(agent.id)

responses = OpenAI(base_url=base + "/openai/v1", api_key=key)
reply = responses.responses.create(model="gpt-4o", input="Hi")
assert reply.output_text, reply
assert responses.responses.retrieve(reply.id).output_text == reply.output_text
try:
    OpenAI(base_url=base + "/openai/v1", api_key=other_key).responses.retrieve(reply.id)
    raise SystemExit("another attendee could read the response")
except Exception as e:  # openai.PermissionDeniedError
    assert "Unauthorized access to response." in str(e), e
# A named agent of the new Agents API (the name is its id); the SDK above speaks the classic API.
named = urllib.request.Request(
    base + "/agents?api-version=2025-05-15-preview",
    data=json.dumps({"name": "sdk-helper", "definition": {"kind": "prompt", "model": "gpt-4o"}}).encode(),
    headers={"api-key": key, "Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(named) as created:
    assert created.status == 200, created.status
agent_reply = responses.responses.create(
    input="Hi", extra_body={"agent": {"name": "sdk-helper", "type": "agent_reference"}}
)
assert agent_reply.id.startswith("resp_"), agent_reply
intruder_responses = OpenAI(base_url=base + "/openai/v1", api_key=other_key)
refused(lambda: intruder_responses.responses.retrieve(agent_reply.id), "response")
refused(
    lambda: intruder_responses.responses.create(
        model="gpt-4o", input="Go on", previous_response_id=reply.id
    ),
    "response",
)

print("agents SDK checks passed")
