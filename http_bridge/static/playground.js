// The playground: a client of the public OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions with
// stream: true), nothing private. The API key lives in sessionStorage only and goes out as a Bearer header.
"use strict";

(() => {
  const KEY_STORAGE = "ortserve.playground.apiKey";
  const KEY_PLACEHOLDER = "$ORTSERVE_API_KEY";
  const $ = (id) => document.getElementById(id);
  const { renderMarkdown } = window.ortserveMarkdown;

  const ui = {
    transcript: $("transcript"), empty: $("empty-note"), composer: $("composer"), message: $("message"),
    send: $("send"), stop: $("stop"), clear: $("clear"), status: $("status"), model: $("model"),
    modelsError: $("models-error"), apiKey: $("api-key"), system: $("system"), stopStrings: $("stop-strings"),
    snippet: $("snippet"), copyCurl: $("copy-curl"), copyPython: $("copy-python"),
  };
  const NUMBERS = { temperature: parseFloat, top_p: parseFloat, max_tokens: toInt, seed: toInt,
    presence_penalty: parseFloat, frequency_penalty: parseFloat };

  const history = []; // committed turns: {role, content}
  let controller = null; // AbortController of the reply being streamed
  let snippetKind = "curl";

  function toInt(text) {
    return /^-?\d+$/.test(text) ? parseInt(text, 10) : NaN;
  }

  function authHeaders() {
    const key = ui.apiKey.value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  // "HTTP 401 · invalid_api_key: Incorrect API key provided." from an OpenAI error body (or whatever came back).
  async function describeHttpError(response) {
    let detail = response.statusText || "request failed";
    try {
      const body = await response.json();
      if (body && body.error) {
        const error = body.error;
        const kind = error.code || error.type;
        detail = kind ? `${kind}: ${error.message}` : String(error.message);
      }
    } catch (_) { /* not JSON: keep the status text */ }
    return `HTTP ${response.status} · ${detail}`;
  }

  function describeStreamError(error) {
    const kind = error.code || error.type;
    return `${kind ? `${kind}: ` : ""}${error.message || "error during streaming"}`;
  }

  async function loadModels() {
    const previous = ui.model.value;
    try {
      const response = await fetch("/v1/models", { headers: authHeaders() });
      if (!response.ok) throw new Error(await describeHttpError(response));
      const ids = (await response.json()).data.map((model) => model.id);
      ui.model.replaceChildren(...ids.map((id) => new Option(id, id)));
      if (ids.includes(previous)) ui.model.value = previous;
      ui.modelsError.hidden = true;
      ui.modelsError.textContent = "";
    } catch (error) {
      // keep the options already known: a bad key must still be sendable so its error shows in the chat
      ui.modelsError.textContent = `Could not list models: ${error.message}`;
      ui.modelsError.hidden = false;
    }
    updateSnippet();
  }

  function stopList() {
    return ui.stopStrings.value
      .split(/[,\n]/)
      .map((item) => item.trim().replace(/\\n/g, "\n"))
      .filter((item) => item.length > 0);
  }

  // The body Send would post now: settings, system prompt, committed history, and `draft` as the next user turn.
  function buildRequest(draft) {
    const messages = [];
    const system = ui.system.value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...history);
    if (draft) messages.push({ role: "user", content: draft });
    const body = { model: ui.model.value, messages };
    for (const [name, parse] of Object.entries(NUMBERS)) {
      const text = $(name).value.trim();
      if (text === "") continue;
      const value = parse(text);
      if (Number.isNaN(value)) throw new Error(`${name} must be a number`);
      body[name] = value;
    }
    const stop = stopList();
    if (stop.length > 4) throw new Error("at most 4 stop strings");
    if (stop.length) body.stop = stop;
    body.stream = true;
    body.stream_options = { include_usage: true };
    return body;
  }

  function shellQuote(text) {
    return `'${text.replace(/'/g, `'"'"'`)}'`;
  }

  function curlSnippet(body) {
    const url = `${location.origin}/v1/chat/completions`;
    return [
      `curl -N ${url} \\`,
      `  -H 'Content-Type: application/json' \\`,
      `  -H "Authorization: Bearer ${KEY_PLACEHOLDER}" \\`,
      `  -d ${shellQuote(JSON.stringify(body, null, 2))}`,
    ].join("\n");
  }

  function pythonSnippet(body) {
    const { model, messages, stream, stream_options: streamOptions, ...params } = body;
    const json = (value) => JSON.stringify(value, null, 4).replace(/\n/g, "\n    ");
    const lines = [
      "import os",
      "",
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url="${location.origin}/v1", api_key=os.environ.get("ORTSERVE_API_KEY", "unused"))`,
      "stream = client.chat.completions.create(",
      `    model=${JSON.stringify(model)},`,
      `    messages=${json(messages)},`,
    ];
    for (const [name, value] of Object.entries(params)) lines.push(`    ${name}=${json(value)},`);
    lines.push(
      "    stream=True,",
      '    stream_options={"include_usage": True},',
      ")",
      "for chunk in stream:",
      "    if chunk.choices and chunk.choices[0].delta.content:",
      '        print(chunk.choices[0].delta.content, end="", flush=True)',
      "    if chunk.usage:",
      "        print()",
      "        print(chunk.usage)",
    );
    return lines.join("\n");
  }

  function updateSnippet() {
    let body;
    try {
      body = buildRequest(ui.message.value.trim() || "Hello!");
    } catch (error) {
      ui.snippet.value = `# ${error.message}`;
      return;
    }
    ui.snippet.value = snippetKind === "python" ? pythonSnippet(body) : curlSnippet(body);
  }

  async function copySnippet(kind) {
    snippetKind = kind;
    updateSnippet();
    $("snippet-box").open = true;
    try {
      await navigator.clipboard.writeText(ui.snippet.value);
      setStatus(`Copied the ${kind} snippet.`);
    } catch (_) {
      ui.snippet.focus();
      ui.snippet.select();
      setStatus(`Snippet selected: press Ctrl+C to copy it.`);
    }
  }

  function addMessage(role, text) {
    ui.empty.hidden = true;
    const node = document.createElement("article");
    node.className = `message ${role}`;
    const label = document.createElement("p");
    label.className = "role";
    label.textContent = role === "user" ? "You" : "Assistant";
    const content = document.createElement("div");
    content.className = "content";
    if (role === "user") content.textContent = text;
    node.append(label, content);
    ui.transcript.append(node);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    return node;
  }

  function addLine(node, className, text) {
    const line = document.createElement("p");
    line.className = className;
    line.textContent = text;
    node.append(line);
    return line;
  }

  // Reads an SSE body: events are separated by blank lines; their `data:` lines are joined with "\n".
  async function* sseEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    const field = (line) => line.slice(line.startsWith("data: ") ? 6 : 5);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r?\n/);
        buffer = lines.pop(); // maybe a partial line: completed by the next read
        for (const line of lines) {
          if (line === "") {
            if (data.length) yield data.join("\n");
            data = [];
          } else if (line.startsWith("data:")) {
            data.push(field(line));
          }
        }
      }
      if (buffer.startsWith("data:")) data.push(field(buffer));
      if (data.length) yield data.join("\n");
    } finally {
      reader.cancel().catch(() => {}); // the consumer stopped early ([DONE], an error event, Stop)
    }
  }

  function formatStats(reply) {
    const parts = [];
    if (reply.firstTokenAt !== null) parts.push(`TTFT ${Math.round(reply.firstTokenAt - reply.startedAt)} ms`);
    const usage = reply.usage;
    const tokens = usage ? usage.completion_tokens : reply.chunks;
    const seconds = (reply.endedAt - (reply.firstTokenAt ?? reply.startedAt)) / 1000;
    if (tokens > 1 && seconds > 0) parts.push(`${((tokens - 1) / seconds).toFixed(1)} tok/s`);
    if (usage) {
      parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ${usage.total_tokens} tokens`);
    }
    if (reply.finishReason) parts.push(`finish: ${reply.finishReason}`);
    return parts.join(" · ");
  }

  async function send(event) {
    event.preventDefault();
    if (controller) return;
    const text = ui.message.value.trim();
    if (!text) return;
    let body;
    try {
      body = buildRequest(text);
    } catch (error) {
      setStatus(`Not sent: ${error.message}.`);
      return;
    }
    ui.message.value = "";
    const userNode = addMessage("user", text);
    const node = addMessage("assistant", "");
    const content = node.querySelector(".content");
    const reply = { text: "", chunks: 0, usage: null, finishReason: null, startedAt: performance.now(),
      firstTokenAt: null, endedAt: 0 };
    let scheduled = false;
    const render = () => {
      scheduled = false;
      content.innerHTML = renderMarkdown(reply.text); // escaped first: see markdown.js
      ui.transcript.scrollTop = ui.transcript.scrollHeight;
    };

    controller = new AbortController();
    node.dataset.state = "streaming";
    node.setAttribute("aria-busy", "true");
    ui.send.disabled = true;
    ui.stop.disabled = false;
    setStatus("Generating…");
    let state = "done";
    let error = null;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(await describeHttpError(response));
      for await (const data of sseEvents(response.body)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(describeStreamError(chunk.error));
        if (chunk.usage) reply.usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta && choice.delta.content;
          if (delta) {
            if (reply.firstTokenAt === null) reply.firstTokenAt = performance.now();
            reply.text += delta;
            reply.chunks += 1;
            if (!scheduled) {
              scheduled = true;
              requestAnimationFrame(render);
            }
          }
          if (choice.finish_reason) reply.finishReason = choice.finish_reason;
        }
      }
    } catch (caught) {
      if (caught.name === "AbortError") state = "stopped";
      else {
        state = "error";
        error = caught.message;
      }
    } finally {
      controller = null;
      reply.endedAt = performance.now();
      render();
      node.dataset.state = state;
      node.removeAttribute("aria-busy");
      ui.send.disabled = false;
      ui.stop.disabled = true;
    }

    if (reply.text) {
      history.push({ role: "user", content: text }, { role: "assistant", content: reply.text });
    } else {
      userNode.classList.add("failed"); // nothing came back: this turn is not part of the conversation
      if (!ui.message.value) ui.message.value = text;
    }
    if (state === "stopped") reply.finishReason = "stopped by you";
    const stats = formatStats(reply);
    if (stats) addLine(node, "stats", stats);
    if (error) addLine(node, "error", error).setAttribute("role", "alert");
    setStatus(state === "error" ? "Failed." : state === "stopped" ? "Stopped." : "Done.");
    updateSnippet();
    ui.message.focus();
  }

  function stop() {
    if (controller) controller.abort(); // closes the connection: the bridge cancels the gRPC call
  }

  ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  ui.apiKey.addEventListener("change", () => {
    const key = ui.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });
  ui.composer.addEventListener("submit", send);
  ui.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && controller) stop();
  });
  ui.stop.addEventListener("click", stop);
  ui.clear.addEventListener("click", () => {
    stop();
    history.length = 0;
    ui.transcript.querySelectorAll(".message").forEach((node) => node.remove());
    ui.empty.hidden = false;
    setStatus("Chat cleared.");
    updateSnippet();
  });
  ui.copyCurl.addEventListener("click", () => copySnippet("curl"));
  ui.copyPython.addEventListener("click", () => copySnippet("python"));
  for (const input of document.querySelectorAll(".settings input, .settings textarea, .settings select, #message")) {
    if (input !== ui.snippet) input.addEventListener("input", updateSnippet);
  }
  loadModels();
})();
