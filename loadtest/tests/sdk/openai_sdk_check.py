"""The official `openai` Python SDK, unchanged, against the edge: AzureOpenAI with the attendee
key, chat (plain and streamed), embeddings, and the v1 API through the plain OpenAI client.
With AIPROXY_OTHER_KEY (a second attendee of the same event), the Responses API is checked for
isolation too: the second attendee cannot read, continue, list the input of, cancel or delete
the first attendee's stored responses (plain or streamed), and `store=False` leaves nothing."""
import os
import sys
import time

import openai
from openai import AzureOpenAI, OpenAI

base = os.environ["AIPROXY_EDGE_API"]  # <edge>/api/v1
key = os.environ["AIPROXY_KEY"]
deployment = os.environ["AIPROXY_DEPLOYMENT"]

client = AzureOpenAI(azure_endpoint=base, api_key=key, api_version="2024-10-21")

chat = client.chat.completions.create(
    model=deployment, messages=[{"role": "user", "content": "Hello"}]
)
assert chat.choices[0].message.content, chat
assert chat.usage.total_tokens > 0, chat

pieces = []
usage = None
stream = client.chat.completions.create(
    model=deployment,
    messages=[{"role": "user", "content": "Hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
for event in stream:
    if event.choices and event.choices[0].delta.content:
        pieces.append(event.choices[0].delta.content)
    if event.usage:
        usage = event.usage
assert len(pieces) > 1, pieces
assert usage is not None and usage.total_tokens > 0
assert "".join(pieces) == chat.choices[0].message.content, pieces

emb = client.embeddings.create(model=deployment, input=["a", "b"])
assert len(emb.data) == 2

v1 = OpenAI(base_url=base + "/openai/v1", api_key=key)
chat = v1.chat.completions.create(model=deployment, messages=[{"role": "user", "content": "Hi"}])
assert chat.choices[0].message.content

try:
    AzureOpenAI(azure_endpoint=base, api_key="wrong", api_version="2024-10-21").chat.completions.create(
        model=deployment, messages=[{"role": "user", "content": "Hello"}]
    )
    sys.exit("a wrong key must be refused")
except Exception as e:  # openai.AuthenticationError
    assert "Unknown API key" in str(e), e

other_key = os.environ.get("AIPROXY_OTHER_KEY")
if other_key:
    mine = OpenAI(base_url=base + "/openai/v1", api_key=key)
    theirs = OpenAI(base_url=base + "/openai/v1", api_key=other_key)

    def refused(attempt):
        try:
            attempt()
        except openai.PermissionDeniedError as e:
            assert "Unauthorized access to response." in str(e), e
            return
        sys.exit("another attendee reached the response")

    stored = mine.responses.create(model=deployment, input="my secret plan")
    assert mine.responses.retrieve(stored.id).id == stored.id
    refused(lambda: theirs.responses.retrieve(stored.id))
    refused(lambda: theirs.responses.input_items.list(stored.id))
    refused(
        lambda: theirs.responses.create(
            model=deployment, input="go on", previous_response_id=stored.id
        )
    )
    refused(lambda: theirs.responses.cancel(stored.id))
    refused(lambda: theirs.responses.delete(stored.id))
    continued = mine.responses.create(
        model=deployment, input="go on", previous_response_id=stored.id
    )
    assert "my secret plan" in continued.output_text, continued.output_text
    own = theirs.responses.create(model=deployment, input="their own")
    assert theirs.responses.retrieve(own.id).id == own.id
    refused(lambda: mine.responses.retrieve(own.id))

    unstored = mine.responses.create(model=deployment, input="x", store=False)
    try:
        mine.responses.retrieve(unstored.id)
        sys.exit("a store=False response could be read back")
    except (openai.NotFoundError, openai.PermissionDeniedError):
        pass

    created = None
    for event in mine.responses.create(model=deployment, input="streamed", stream=True):
        if event.type == "response.created":
            created = event.response.id
    assert created, "no response.created event"
    deadline = time.time() + 5
    while True:
        try:
            mine.responses.retrieve(created)
            break
        except openai.PermissionDeniedError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    refused(lambda: theirs.responses.retrieve(created))
    print("openai SDK isolation checks passed")

print("openai SDK checks passed")
