// The official OpenAI Node SDK at every base URL of the public API, with the hosted APIs' model aliases.
// Run by tests/e2e/test_bases_aliases.py with ROOT_URL (bridge root, auth on), API_KEY and MODEL_ID (the id).
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const ROOT = process.env.ROOT_URL;
const KEY = process.env.API_KEY;
const BASES = ["/v1", "", "/v1/inference"];
const ALIASES = ["llama3.1:8b-instruct-fp16", "org/model"];
const client = (base, apiKey = KEY) => new OpenAI({ baseURL: `${ROOT}${base}`, apiKey, maxRetries: 0, timeout: 120_000 });
const HELLO = [{ role: "user", content: "Hello" }];

for (const base of BASES) {
  test(`models, chat and completions at base '${base || "/"}'`, async () => {
    const openai = client(base);
    const ids = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    assert.ok(ids.includes(process.env.MODEL_ID) && ALIASES.every((a) => ids.includes(a)), ids.join(","));
    for (const alias of ALIASES) assert.equal((await openai.models.retrieve(alias)).id, alias);
    const full = await openai.chat.completions.create({ model: ALIASES[0], messages: HELLO, max_tokens: 6, temperature: 0 });
    assert.equal(full.model, ALIASES[0]);
    assert.ok(full.choices[0].message.content.length > 0);
    const stream = await openai.chat.completions.create({ model: ALIASES[1], messages: HELLO, max_tokens: 6, temperature: 0, stream: true });
    let text = "";
    for await (const chunk of stream) {
      assert.equal(chunk.model, ALIASES[1]);
      for (const choice of chunk.choices) text += choice.delta.content ?? "";
    }
    assert.equal(text, full.choices[0].message.content);
    const completion = await openai.completions.create({ model: ALIASES[1], prompt: "The capital of France is", max_tokens: 4 });
    assert.equal(completion.model, ALIASES[1]);
    assert.equal(completion.usage.completion_tokens, 4);
  });

  test(`unknown model and wrong key at base '${base || "/"}'`, async () => {
    await assert.rejects(client(base).chat.completions.create({ model: "nope", messages: HELLO }), (err) => {
      assert.equal(err.status, 404);
      assert.equal(err.code, "model_not_found");
      return true;
    });
    await assert.rejects(client(base, "wrong").models.list(), (err) => err.status === 401);
  });
}

// The product brief's Node examples, host and key changed.
test("Ektos: baseURL .../v1/, model llama-3.1-8b-instruct", async () => {
  const openai = client("/v1/");
  const completion = await openai.chat.completions.create({
    messages: [{ role: "user", content: "How can you help me?" }],
    model: "llama-3.1-8b-instruct",
  });
  assert.equal(completion.choices[0].message.role, "assistant");
  assert.equal(completion.model, "llama-3.1-8b-instruct");
});

test("Avangenio: baseURL without /v1, model radiance", async () => {
  const openai = client("");
  const completion = await openai.chat.completions.create({
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "How many days are in a year?" },
    ],
    model: "radiance",
  });
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.equal(completion.model, "radiance");
});

test("GravixLayer: baseURL .../v1/inference, model llama3.1:8b-instruct-fp16", async () => {
  const openai = client("/v1/inference");
  const completion = await openai.chat.completions.create({
    messages: [{ role: "user", content: "Hello" }],
    model: "llama3.1:8b-instruct-fp16",
  });
  const json = JSON.parse(JSON.stringify(completion, null, 2));
  assert.equal(json.object, "chat.completion");
  assert.equal(json.model, "llama3.1:8b-instruct-fp16");
  assert.match(json.system_fingerprint, /^fp_/);
  assert.equal(json.usage.total_tokens, json.usage.prompt_tokens + json.usage.completion_tokens);
});
