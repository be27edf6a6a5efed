// Structured outputs and tool calls with the official OpenAI Node SDK against the real bridge. Run by
// tests/e2e/test_node_client.py with BASE_URL (bridge root, auth off) and MODEL.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const MODEL = process.env.MODEL;
const client = new OpenAI({ baseURL: `${process.env.BASE_URL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });

test("json_schema response_format: the content parses and matches the schema", async () => {
  const schema = {
    type: "object",
    properties: {
      city: { type: "string", maxLength: 30 },
      population_millions: { type: "integer", minimum: 0, maximum: 50 },
      landmarks: { type: "array", items: { type: "string", maxLength: 30 }, minItems: 1, maxItems: 3 },
      kind: { type: "string", enum: ["capital", "town"] },
    },
    required: ["city", "population_millions", "landmarks", "kind"],
    additionalProperties: false,
  };
  const reply = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: "Describe Paris as JSON." }],
    response_format: { type: "json_schema", json_schema: { name: "city", schema, strict: true } },
    temperature: 0,
    max_tokens: 200,
  });
  assert.equal(reply.choices[0].finish_reason, "stop");
  const value = JSON.parse(reply.choices[0].message.content);
  assert.deepEqual(Object.keys(value).sort(), ["city", "kind", "landmarks", "population_millions"]);
  assert.ok(Number.isInteger(value.population_millions) && value.population_millions >= 0 && value.population_millions <= 50);
  assert.ok(value.landmarks.length >= 1 && value.landmarks.length <= 3);
  assert.ok(["capital", "town"].includes(value.kind));
});

test("streamed tool call rebuilt by the stream helper equals the non-streamed call", async () => {
  const params = {
    model: MODEL,
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    tools: [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "Get the current weather in a city.",
          parameters: {
            type: "object",
            properties: { city: { type: "string", maxLength: 40 } },
            required: ["city"],
            additionalProperties: false,
          },
        },
      },
    ],
    tool_choice: "required",
    temperature: 0,
    max_tokens: 100,
  };
  const full = await client.chat.completions.create(params);
  const stream = client.chat.completions.stream(params);
  const done = [];
  stream.on("tool_calls.function.arguments.done", (event) => done.push([event.name, event.arguments]));
  const final = await stream.finalChatCompletion();
  const calls = (message) => message.tool_calls.map((c) => [c.function.name, c.function.arguments]);
  assert.equal(full.choices[0].finish_reason, "tool_calls");
  assert.equal(final.choices[0].finish_reason, "tool_calls");
  assert.equal(full.choices[0].message.content, null);
  assert.ok(full.choices[0].message.tool_calls.length >= 1);
  assert.deepEqual(calls(final.choices[0].message), calls(full.choices[0].message));
  assert.deepEqual(done, calls(full.choices[0].message));
  for (const call of final.choices[0].message.tool_calls) {
    assert.match(call.id, /^call_/);
    assert.equal(typeof JSON.parse(call.function.arguments).city, "string");
  }
});
