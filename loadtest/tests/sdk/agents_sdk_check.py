"""The official `azure-ai-agents` SDK against the edge, with the attendee key as its credential:
an agent, a thread, a message, a streamed run, listing, deleting; and the `openai` SDK's Responses
API, for a model and for an agent. Only configuration is ours: the endpoint, and an authentication
policy that sends the attendee key (azure-core refuses bearer tokens over plain http)."""
import os

from azure.ai.agents import AgentsClient
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
agent_reply = responses.responses.create(
    input="Hi", extra_body={"agent": {"name": "helper", "type": "agent_reference"}}
)
assert agent_reply.id.startswith("resp_"), agent_reply

print("agents SDK checks passed")
