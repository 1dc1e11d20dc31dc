#!/usr/bin/env python3
"""`tuna serve` through the official `openai` Python client, unmodified.

    out/venv-serve/bin/python tools/serve_openai_test.py --base-url http://127.0.0.1:PORT/v1 \
        --api-key KEY --image models/tuna2-small/demo/count.png

Needs the venv of tools/setup_serve_venv.sh. Run by tests/test_serve_openai.c
against a server it starts on the bundled model. Checks, failing with a
non-zero exit on the first problem:

 1. models.list() lists the model; a wrong API key raises AuthenticationError.
 2. Chat with an image (a base64 data: URI): a non-empty answer, the image's
    patches counted in usage.prompt_tokens.
 3. Streaming: the deltas joined equal the non-streamed reply of the same
    seed; the last chunk carries usage (stream_options.include_usage).
 4. images.generate (n=2) and images.edit: PNGs of the model's size.
 5. A forced tool call (a named function, then "required"): tool_calls with
    finish_reason "tool_calls" and arguments that json.loads and that follow
    the function's parameter schema; the tool's result sent back in a "tool"
    message gets an answer.
 6. response_format json_schema: content that json.loads and follows the
    schema; chat.completions.parse with a pydantic model.
 7. A bad request raises BadRequestError (HTTP 400).
"""
import argparse
import base64
import json
import struct
import sys

import openai
from openai import OpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "the city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "dst": {"type": "boolean"}},
            "required": ["zone", "dst"],
        },
    },
}


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)
    print("ok  ", what)


def png_size(data):
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def follows_weather(args):
    return (
        isinstance(args, dict)
        and isinstance(args.get("city"), str)
        and args.get("unit") in ("celsius", "fahrenheit")
        and ("days" not in args or isinstance(args["days"], int))
        and set(args) <= {"city", "unit", "days"}
    )


def follows_time(args):
    return isinstance(args, dict) and isinstance(args.get("zone"), str) and isinstance(args.get("dst"), bool)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--image", required=True)
    a = ap.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    print("openai", openai.__version__)

    # 1
    models = client.models.list()
    model = models.data[0].id
    check(len(models.data) == 1 and model, "models.list: %s" % model)
    try:
        OpenAI(base_url=a.base_url, api_key="wrong", max_retries=0).models.list()
        check(False, "a wrong key is refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "a wrong key raises AuthenticationError (401)")

    # 2
    png = open(a.image, "rb").read()
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "How many objects are there?"},
            {"type": "image_url", "image_url": {"url": uri}}]}],
        temperature=0, max_tokens=16)
    answer = r.choices[0].message.content
    check(isinstance(answer, str) and answer.strip() != "", "chat with an image: %r" % answer)
    check(r.usage.prompt_tokens > 64 and r.choices[0].finish_reason in ("stop", "length"),
          "usage counts the image (%d prompt tokens)" % r.usage.prompt_tokens)

    # 3
    kw = dict(model=model, messages=[{"role": "user", "content": "Tell me about dresses"}],
              temperature=0.9, seed=4, max_tokens=20, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**kw).choices[0].message.content
    pieces, usage, finish = [], None, None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    check("".join(pieces) == whole and len(pieces) > 3, "streamed deltas (%d) equal the whole reply" % len(pieces))
    check(usage is not None and usage.completion_tokens == 20 and finish == "length", "stream usage and finish")

    # 4
    g = client.images.generate(model=model, prompt="a red circle", n=2, size="256x256",
                               response_format="b64_json", extra_body={"steps": 2, "seed": 1})
    sizes = [png_size(base64.b64decode(d.b64_json)) for d in g.data]
    check(len(g.data) == 2 and all(s == sizes[0] for s in sizes), "images.generate n=2: %s" % (sizes,))
    with open(a.image, "rb") as f:
        ed = client.images.edit(model=model, image=f, prompt="make it blue", extra_body={"steps": 2})
    check(len(ed.data) == 1 and png_size(base64.b64decode(ed.data[0].b64_json))[0] > 0, "images.edit")

    # 5
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        for seed in (0, 1, 2):
            r = client.chat.completions.create(model=model, messages=msgs, tools=[WEATHER, TIME],
                                               tool_choice=choice, temperature=1.0, seed=seed, max_tokens=200)
            ch = r.choices[0]
            calls = ch.message.tool_calls
            check(ch.finish_reason == "tool_calls" and calls and len(calls) == 1,
                  "forced tool call (%s, seed %d)" % (choice if isinstance(choice, str) else "named", seed))
            fn = calls[0].function
            args = json.loads(fn.arguments)
            ok = follows_weather(args) if fn.name == "get_weather" else fn.name == "get_time" and follows_time(args)
            if not isinstance(choice, str):
                ok = ok and fn.name == "get_weather"
            check(ok, "  %s(%s) follows the schema" % (fn.name, fn.arguments))
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0].id, "type": "function", "function": {"name": fn.name, "arguments": fn.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps({"temperature": 21})}]
    r = client.chat.completions.create(model=model, messages=follow, tools=[WEATHER, TIME], temperature=0,
                                       max_tokens=16)
    check(r.choices[0].message.content is not None or r.choices[0].message.tool_calls,
          "a tool result sent back gets an answer")

    # 6
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "colours": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}}},
        "required": ["name", "age", "colours"], "additionalProperties": False}
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Describe a person as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
        temperature=1.0, seed=5, max_tokens=300)
    p = json.loads(r.choices[0].message.content)
    check(isinstance(p["name"], str) and isinstance(p["age"], int) and set(p) == {"name", "age", "colours"}
          and all(c in ("red", "green", "blue") for c in p["colours"]), "json_schema reply: %s" % p)
    try:
        from pydantic import BaseModel

        class Shape(BaseModel):
            kind: str
            sides: int
            filled: bool

        parsed = client.chat.completions.parse(
            model=model, messages=[{"role": "user", "content": "A shape"}], response_format=Shape,
            temperature=0, max_tokens=200)
        shape = parsed.choices[0].message.parsed
        check(isinstance(shape, Shape), "chat.completions.parse with a pydantic model: %r" % shape)
    except AttributeError:
        print("skip chat.completions.parse (not in this openai version)")

    # 7
    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=4)
        check(False, "an empty conversation is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "BadRequestError (400): %s" % e.message)
    print("all openai client checks passed")


if __name__ == "__main__":
    main()
