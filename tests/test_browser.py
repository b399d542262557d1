"""The chat page in a real browser: headless Chromium (Debian's, through its chromedriver) uploads an
image, asks, and watches the answer stream into the chat. Skipped without Chromium, unless
VPGTRANS_REQUIRE_BROWSER=1 (CI) makes that a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_serve import png, running

from vpgtrans.chat.config import ChatSettings, ServeArgs
from vpgtrans.chat.serve import build_app
from vpgtrans.chat.session import ChatModel

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 20

# Every text the last assistant bubble shows, recorded in the page as it changes.
WATCH_ANSWERS = """
window.answers = [];
new MutationObserver(() => {
  const bubbles = document.querySelectorAll('#chatbot [data-testid="bot"]');
  const text = bubbles.length ? bubbles[bubbles.length - 1].innerText.trim() : '';
  if (text && text !== window.answers[window.answers.length - 1]) window.answers.push(text);
}).observe(document.querySelector('#chatbot'), {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"no {' or '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("VPGTRANS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def test_the_page_streams_an_answer_about_an_uploaded_image(browser, chat_model, tmp_path):
    image = tmp_path / "red.png"
    image.write_bytes(png())
    app = build_app(ChatModel.load(str(chat_model)), ChatSettings(max_new_tokens=200), ServeArgs())
    wait = WebDriverWait(browser, WAIT_S)
    with running(app) as url:
        try:
            browser.get(url + "/")
            question = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#question textarea"))
            browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(image))
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#image img"))  # uploaded
            browser.execute_script(WATCH_ANSWERS)
            question.send_keys("What is in the image?")
            browser.find_element(By.ID, "send").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#chatbot [data-testid='user'] img"))
            wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, "#image img"))  # asked: the box empties
            answers = browser.execute_script("return window.answers")
        except Exception:
            browser.save_screenshot(str(tmp_path / "page.png"))
            raise
    assert answers and answers[-1], "no answer appeared"
    assert len(answers) > 1, f"the answer came at once, not streamed: {answers}"
    assert question.get_attribute("value") == ""
