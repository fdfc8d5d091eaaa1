"""The official `openai` Python SDK, unchanged, against the edge: AzureOpenAI with the attendee
key, chat (plain and streamed), embeddings, and the v1 API through the plain OpenAI client."""
import os
import sys

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

print("openai SDK checks passed")
