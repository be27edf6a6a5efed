// The official OpenAI Node SDK against the real bridge. Run by tests/e2e/test_node_client.py with
// BASE_URL (bridge root, auth off), AUTH_BASE_URL + API_KEY (a bridge with auth on) and MODEL.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const MODEL = process.env.MODEL;
const client = new OpenAI({ baseURL: `${process.env.BASE_URL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const FRANCE = [{ role: "user", content: "What is the capital of France?" }];

test("non-stream chat completion", async () => {
  const reply = await client.chat.completions.create({ model: MODEL, messages: FRANCE, temperature: 0 });
  assert.equal(reply.object, "chat.completion");
  assert.match(reply.id, /^chatcmpl-/);
  assert.match(reply.choices[0].message.content, /Paris/);
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
});

test("stream equals non-stream at temperature 0, with include_usage", async () => {
  const params = { model: MODEL, messages: FRANCE, temperature: 0, max_tokens: 12 };
  const full = await client.chat.completions.create(params);
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, []);
      usage = chunk.usage;
    }
  }
  assert.equal(text, full.choices[0].message.content);
  assert.equal(finish, full.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, full.usage.completion_tokens);
});

test("n=2 streaming: every choice has its own index and finish_reason", async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: FRANCE, n: 2, temperature: 1, seed: 3, max_tokens: 8, stream: true,
  });
  const finishes = new Map();
  const texts = ["", ""];
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      texts[choice.index] += choice.delta.content ?? "";
      if (choice.finish_reason) {
        assert.ok(!finishes.has(choice.index), "one finish_reason per choice");
        finishes.set(choice.index, choice.finish_reason);
      }
    }
  }
  assert.deepEqual([...finishes.keys()].sort(), [0, 1]);
  for (const reason of finishes.values()) assert.ok(["stop", "length"].includes(reason));
  assert.ok(texts[0].length > 0 && texts[1].length > 0);
});

test("logprobs and top_logprobs", async () => {
  const reply = await client.chat.completions.create({
    model: MODEL, messages: FRANCE, temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 3,
  });
  const content = reply.choices[0].logprobs.content;
  assert.equal(content.length, 4);
  for (const item of content) {
    assert.equal(typeof item.token, "string");
    assert.ok(item.logprob <= 0);
    assert.ok(Array.isArray(item.bytes));
    assert.equal(item.top_logprobs.length, 3);
    assert.equal(item.top_logprobs[0].logprob, item.logprob, "greedy picks the most likely token");
  }
});

test("stop list", async () => {
  const reply = await client.chat.completions.create({
    model: MODEL, messages: FRANCE, temperature: 0, stop: ["Paris", "London"],
  });
  assert.ok(!reply.choices[0].message.content.includes("Paris"));
  assert.equal(reply.choices[0].finish_reason, "stop");
});

test("same seed, same output", async () => {
  const params = { model: MODEL, messages: FRANCE, temperature: 1, max_tokens: 16, seed: 1234 };
  const a = await client.chat.completions.create(params);
  const b = await client.chat.completions.create(params);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test("legacy completions", async () => {
  const reply = await client.completions.create({ model: MODEL, prompt: "The capital of France is", max_tokens: 4, temperature: 0 });
  assert.equal(reply.object, "text_completion");
  assert.equal(reply.choices[0].finish_reason, "length");
  assert.ok(reply.choices[0].text.length > 0);
});

test("typed errors: BadRequestError and NotFoundError", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: FRANCE, temperature: 5 }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === "temperature",
  );
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: FRANCE, functions: [{ name: "f" }] }),
    (err) => err instanceof OpenAI.BadRequestError && err.code === "unsupported_parameter" && err.param === "functions",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: FRANCE }),
    (err) => err instanceof OpenAI.NotFoundError && err.status === 404,
  );
  await assert.rejects(client.models.retrieve("no-such-model"), OpenAI.NotFoundError);
});

test("typed errors: AuthenticationError against an auth-on bridge", async () => {
  const authURL = `${process.env.AUTH_BASE_URL}/v1`;
  const wrong = new OpenAI({ baseURL: authURL, apiKey: "sk-ortserve-wrong", maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (err) => err instanceof OpenAI.AuthenticationError && err.code === "invalid_api_key");
  const right = new OpenAI({ baseURL: authURL, apiKey: process.env.API_KEY, maxRetries: 0 });
  const models = await right.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
});
