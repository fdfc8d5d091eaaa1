"""Usage metering driven by the official `openai` SDK, unchanged: concurrent clients through
several edges (AIPROXY_EDGE_APIS, comma-separated `<edge>/api/v1` bases) make every kind of call
whose usage the edge must count — chat JSON, chat streams with and without
`stream_options.include_usage`, legacy completions, embeddings, Responses JSON and streamed — and
check what each client sees: a stream that did not ask for usage has no usage chunk and no `usage`
member in any chunk (exactly what Azure sends such a client), one that asked gets its usage.
Prints the number of calls made, for the Rust test to compare with the totals."""
import json
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from openai import AzureOpenAI, OpenAI

bases = os.environ["AIPROXY_EDGE_APIS"].split(",")
key = os.environ["AIPROXY_KEY"]
deployment = os.environ["AIPROXY_DEPLOYMENT"]
rounds = int(os.environ.get("AIPROXY_ROUNDS", "4"))


def azure(base):
    return AzureOpenAI(azure_endpoint=base, api_key=key, api_version="2024-10-21", max_retries=0)


def v1(base):
    return OpenAI(base_url=base + "/openai/v1", api_key=key, max_retries=0)


def chat_json(base, n):
    chat = azure(base).chat.completions.create(
        model=deployment, messages=[{"role": "user", "content": "Hello " * (n + 1)}]
    )
    assert chat.usage.total_tokens > 0, chat


def chat_stream_with_usage(base, n):
    usage = None
    for chunk in azure(base).chat.completions.create(
        model=deployment,
        messages=[{"role": "user", "content": "Tell me " * (n + 1)}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage:
            assert not chunk.choices, chunk
            usage = chunk.usage
    assert usage is not None and usage.total_tokens > 0


def chat_stream_without_usage(base, n):
    # Raw SSE, to see the bytes the client gets: no usage chunk, no `usage` member anywhere.
    url = f"{base}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21"
    body = {"messages": [{"role": "user", "content": "Stream " * (n + 1)}], "stream": True}
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"api-key": key, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status
        text = response.read().decode()
    assert "usage" not in text, text
    assert text.rstrip().endswith("data: [DONE]"), text
    # And through the SDK: nothing with usage.
    for chunk in azure(base).chat.completions.create(
        model=deployment, messages=[{"role": "user", "content": "x" * (n + 1)}], stream=True
    ):
        assert chunk.usage is None, chunk


def completions(base, n):
    done = azure(base).completions.create(model=deployment, prompt="Once " * (n + 1))
    assert done.usage.total_tokens > 0, done
    for chunk in azure(base).completions.create(model=deployment, prompt="On " * (n + 1), stream=True):
        assert chunk.usage is None, chunk


def embeddings(base, n):
    emb = azure(base).embeddings.create(model=deployment, input=["a" * (n + 1), "b"])
    assert emb.usage.total_tokens > 0, emb


def responses(base, n):
    done = v1(base).responses.create(model=deployment, input="Plan " * (n + 1), store=(n % 2 == 0))
    assert done.usage.total_tokens > 0, done
    completed = None
    for event in v1(base).responses.create(model=deployment, input="Go " * (n + 1), stream=True):
        if event.type == "response.completed":
            completed = event.response
    assert completed is not None and completed.usage.total_tokens > 0


# Each entry: (function, HTTP calls it makes).
KINDS = [
    (chat_json, 1),
    (chat_stream_with_usage, 1),
    (chat_stream_without_usage, 2),
    (completions, 2),
    (embeddings, 1),
    (responses, 2),
]

jobs = []
for n in range(rounds):
    for i, (kind, _) in enumerate(KINDS):
        jobs.append((kind, bases[(n + i) % len(bases)], n))

# The first round in order, on this thread: the SDK's response models are built on first use, and
# pydantic (2.13) fails a model two threads build at once ("BaseModel cannot be instantiated
# directly"). The other rounds run concurrently.
first = len(KINDS)
for kind, base, n in jobs[:first]:
    kind(base, n)
with ThreadPoolExecutor(max_workers=8) as pool:
    for future in [pool.submit(kind, base, n) for kind, base, n in jobs[first:]]:
        future.result()

calls = rounds * sum(c for _, c in KINDS)
print(f"calls={calls}")
print("usage SDK load passed")
