"""The playground in a real browser (Debian's chromium driven by Playwright) against the real stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.conftest import MODEL_ID, AuthBridge, Stack
from tests.e2e.reliability import load, wait_for_running

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (installed by `make test`); never `playwright install`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "playground.png"
REPLY = ".message.assistant >> nth=-1"
# Records the length of the newest reply each time the page changes it (the test then sees the growth).
RECORD_GROWTH = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const replies = document.querySelectorAll('.message.assistant .content');
    if (replies.length) window.__lengths.push(replies[replies.length - 1].textContent.length);
  }).observe(document.getElementById('transcript'), {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # a rejected fetch (401) is logged by the browser itself; anything else (CSP, script errors) is a defect
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def open_playground(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    assert page.url == f"{base_url}/playground"  # `/` redirects


def set_params(page: Page, **params: str) -> None:
    for name, value in params.items():
        page.fill(f"#{name}", value)


def test_chat_streams_token_by_token(stack: Stack, page: Page, tmp_path: Path) -> None:
    open_playground(page, stack.base_url)
    expect(page.locator("#model option")).to_have_text([MODEL_ID])
    page.fill("#system", "You are a concise geography assistant. Answer in one sentence.")
    set_params(page, temperature="0", max_tokens="160", seed="7")
    page.fill("#message", "What is the capital of France?")
    page.press("#message", "Enter")  # the keyboard sends
    first = page.locator(REPLY)
    expect(first).to_have_attribute("data-state", "done")
    assert "Paris" in first.locator(".content").inner_text()
    assert "finish: stop" in first.locator(".stats").inner_text()

    page.evaluate(RECORD_GROWTH)
    page.fill("#message", "List three famous sights there, in markdown.")  # a second turn, with the first as context
    page.click("#send")
    reply = page.locator(REPLY)
    expect(page.locator(".message.assistant")).to_have_count(2)
    expect(reply).to_have_attribute("data-state", "done")
    lengths: list[int] = page.evaluate("window.__lengths")
    growth = sorted({n for n in lengths if n > 0})
    assert len(growth) >= 5, f"the reply did not grow chunk by chunk: {lengths}"
    assert growth[-1] == len(reply.locator(".content").text_content() or "")
    assert reply.locator(".content ol li").count() >= 2  # the markdown list, rendered
    stats = reply.locator(".stats").inner_text()
    for part in ("TTFT", "tok/s", "prompt +", "completion =", "finish: "):
        assert part in stats
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "playground.png"
    page.screenshot(path=shot)
    print(f"screenshot: {shot}")
    if os.environ.get("ORTSERVE_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture on purpose only
        shutil.copyfile(shot, DOCS_SCREENSHOT)

    # the next request carries the conversation so far; the snippet shows it with a placeholder key
    page.fill("#message", "Thanks!")
    page.click("#copy-curl")
    curl = page.input_value("#snippet")
    assert curl.startswith(f"curl -N {stack.base_url}/v1/chat/completions")
    assert 'Bearer $ORTSERVE_API_KEY"' in curl
    for part in ('"role": "system"', "What is the capital of France?", "List three famous sights", '"Thanks!"'):
        assert part in curl
    assert '"temperature": 0' in curl and '"include_usage": true' in curl
    page.click("#copy-python")
    python = page.input_value("#snippet")
    assert "from openai import OpenAI" in python and "temperature=0," in python and "seed=7," in python


def test_stop_cancels_generation_on_the_server(stack: Stack, page: Page) -> None:
    wait_for_running(stack.grpc_target, 0, timeout=30)
    open_playground(page, stack.base_url)
    expect(page.locator("#model option")).to_have_text([MODEL_ID])
    set_params(page, temperature="0", max_tokens="1500")
    page.fill("#message", "Tell me a very long story about a dragon, with many chapters.")
    page.click("#send")

    reply = page.locator(REPLY)
    page.wait_for_function(
        "() => document.querySelector('.message.assistant .content').textContent.length > 40", polling=50
    )
    expect(reply).to_have_attribute("data-state", "streaming")
    assert load(stack.grpc_target).running_sequences == 1  # still generating
    page.click("#stop")
    expect(reply).to_have_attribute("data-state", "stopped")
    # the bridge cancelled the gRPC call; the engine freed the sequence
    wait_for_running(stack.grpc_target, 0, timeout=5)
    assert "stopped by you" in reply.locator(".stats").inner_text()
    expect(page.locator("#status")).to_have_text("Stopped.")
    expect(page.locator("#stop")).to_be_disabled()


def test_api_key_errors_are_shown(auth_bridge: AuthBridge, page: Page, tmp_path: Path) -> None:
    page.goto(f"{auth_bridge.base_url}/playground")  # the page needs no key; the API does
    models_error = page.locator("#models-error")
    expect(models_error).to_contain_text("HTTP 401 · invalid_api_key: Missing or malformed API key")

    page.fill("#api-key", auth_bridge.key)
    page.press("#api-key", "Enter")  # Enter in a field commits it (change event)
    page.keyboard.press("Tab")
    expect(page.locator("#model option")).to_have_text([MODEL_ID])
    expect(models_error).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('ortserve.playground.apiKey')") == auth_bridge.key
    assert page.evaluate("localStorage.length") == 0
    page.click("#copy-curl")
    assert auth_bridge.key not in page.input_value("#snippet")  # never the real key

    page.fill("#api-key", "not-the-key")
    page.press("#api-key", "Tab")
    expect(models_error).to_contain_text("Incorrect API key provided.")
    set_params(page, max_tokens="8")
    page.fill("#message", "Hello?")
    page.press("#message", "Enter")
    reply = page.locator(REPLY)
    expect(reply).to_have_attribute("data-state", "error")
    expect(reply.locator(".error")).to_have_text("HTTP 401 · invalid_api_key: Incorrect API key provided.")
    expect(page.locator(".message.user.failed")).to_have_count(1)
    assert page.input_value("#message") == "Hello?"  # given back to edit and resend
    page.screenshot(path=tmp_path / "playground-bad-key.png")

    page.reload()  # the key survives a reload of the tab
    assert page.input_value("#api-key") == "not-the-key"
    page.fill("#api-key", auth_bridge.key)
    page.press("#api-key", "Tab")
    expect(models_error).to_be_hidden()
    set_params(page, max_tokens="8")
    page.fill("#message", "Hello?")
    page.press("#message", "Enter")
    expect(page.locator(REPLY)).to_have_attribute("data-state", "done")


def test_markdown_renderer_never_lets_model_output_become_html(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.base_url}/playground")
    attack = (
        'Hi <img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>\n'
        '<a href="javascript:window.__pwned=3">x</a> **bold <b>** and *it* `<i>code</i>`\n\n'
        "- one\n- <svg onload=window.__pwned=4>\n\n```\n<iframe src=x></iframe>\n```"
    )
    html = page.evaluate(
        """(source) => {
          const box = document.createElement('div');
          box.id = 'md-test';
          box.innerHTML = window.ortserveMarkdown.renderMarkdown(source);
          document.body.append(box);
          return box.innerHTML;
        }""",
        attack,
    )
    page.wait_for_timeout(300)
    tags = page.evaluate("[...document.querySelectorAll('#md-test *')].map((el) => el.tagName.toLowerCase())")
    assert set(tags) <= {"p", "br", "strong", "em", "code", "ul", "ol", "li", "pre"}, html
    assert {"strong", "em", "code", "ul", "li", "pre"} <= set(tags), html
    assert page.evaluate("window.__pwned") is None
    text = page.inner_text("#md-test")
    for literal in ('<img src=x onerror="window.__pwned=1">', "<script>", "<svg onload", "<iframe src=x></iframe>"):
        assert literal in text


def test_phone_width_and_keyboard(stack: Stack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{stack.base_url}/playground")
        expect(page.locator("#model option")).to_have_text([MODEL_ID])
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
        for control in ("#message", "#model", "#api-key", "#system", "#temperature", "#stop-strings"):
            label = page.locator(f"label[for='{control[1:]}']")
            expect(label).to_have_count(1)  # every control has a label
        page.focus("#message")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "message"
    finally:
        context.close()
