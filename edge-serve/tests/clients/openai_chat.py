"""A streamed and a non-streamed chat through the official `openai` Python client (PyPI).

    python openai_chat.py BASE_URL PROMPT MAX_TOKENS

Prints one JSON object: the whole reply, the streamed reply, both finish reasons and the
usage the server reported. edge-serve's full-tier test compares them with edge-runtime alone.
"""
import json
import sys

from openai import OpenAI

base, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = OpenAI(base_url=base, api_key="sk-test", max_retries=0)
messages = [{"role": "user", "content": prompt}]

whole = client.chat.completions.create(
    model="any", messages=messages, max_tokens=max_tokens, temperature=0, seed=1
)
parts, stream_finish, usage = [], None, None
for chunk in client.chat.completions.create(
    model="any",
    messages=messages,
    max_tokens=max_tokens,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for choice in chunk.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
        if choice.finish_reason:
            stream_finish = choice.finish_reason
models = [m.id for m in client.models.list()]
print(json.dumps({
    "whole": whole.choices[0].message.content,
    "whole_finish": whole.choices[0].finish_reason,
    "whole_usage": whole.usage.model_dump(),
    "streamed": "".join(parts),
    "streamed_finish": stream_finish,
    "streamed_usage": usage,
    "models": models,
}, ensure_ascii=False))
