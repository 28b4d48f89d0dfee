#!/usr/bin/env python3
"""Browser test of the chat page that `swiftgpt serve` serves at `/`, in headless Chromium.

    python3 Tools/serve/browser_test.py --model /tmp/qs7/dpo [--screenshot /tmp/swiftgpt-chat.png]
    python3 Tools/serve/browser_test.py --url http://127.0.0.1:8080    # a running server

Starts the server (unless --url), opens `/`, and for each of --turns messages types it into
`#input`, clicks `#send` and waits (at most --reply-timeout seconds) until there is one more
`.message.assistant[data-done="true"]` element, with non-empty text, in `#messages`. Also checks that
the page loaded nothing from other origins and logged no severe console errors. Saves a screenshot
(also on failure), stops the server, exits 1 on any failure.

Needs Chromium, its driver and Selenium:
    apt-get install -y chromium chromium-driver && python3 -m pip install selenium
"""

import argparse
import os
import shutil
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib  # noqa: E402

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    sys.exit("selenium is needed: python3 -m pip install selenium (and apt-get install chromium chromium-driver)")

DONE = '#messages .message.assistant[data-done="true"]'


def find_executable(explicit, names, extra_paths):
    if explicit:
        return explicit
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    for p in extra_paths:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def make_driver(args):
    """Headless Chromium through the locally installed chromedriver (no driver downloads)."""
    chrome = find_executable(args.chromium, ["chromium", "chromium-browser", "google-chrome"], ["/usr/lib/chromium/chromium"])
    driver_path = find_executable(args.chromedriver, ["chromedriver"], ["/usr/lib/chromium/chromedriver"])
    if not chrome or not driver_path:
        raise RuntimeError("chromium / chromedriver not found: apt-get install -y chromium chromium-driver "
                           "(or pass --chromium and --chromedriver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1100,900", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-sync", "--metrics-recording-only"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


def assistant_done(driver, before):
    """The newest finished assistant message once there are more than `before` of them; else False."""
    done = driver.find_elements(By.CSS_SELECTOR, DONE)
    return done[-1] if len(done) > before else False


def set_field(driver, element_id, value):
    """Sets an input of the page (even one inside a closed <details>) the way a user's edit would,
    when the page has it; returns whether it did."""
    return bool(driver.execute_script(
        "const e = document.getElementById(arguments[0]); if (!e) return false;"
        "e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));"
        "e.dispatchEvent(new Event('change', {bubbles: true})); return true;", element_id, str(value)))


def reply_text(reply):
    """Text of a reply: its `.content` part when it has one (the rest may be stats), else all of it."""
    parts = reply.find_elements(By.CSS_SELECTOR, ".content")
    return (parts[0].text if parts else reply.text).strip()


def console_errors(driver):
    try:
        entries = driver.get_log("browser")
    except WebDriverException:
        return []
    # The browser asks for /favicon.ico by itself; a 404 for it is not the page's fault.
    return [e for e in entries if e.get("level") == "SEVERE" and "favicon.ico" not in e.get("message", "")]


def run(args, base_url):
    failures = []
    driver = make_driver(args)
    try:
        driver.set_page_load_timeout(30)
        driver.get(base_url + "/")
        wait = WebDriverWait(driver, 15)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#input"))
        # The page's own settings, where it has them: the API key (kept by the page; reload so that
        # it is used from the start) and a max_tokens that fits a tiny model's context.
        if args.api_key and set_field(driver, "api-key", args.api_key):
            console_errors(driver)  # drops the first load's messages (its 401s, before the key was set)
            driver.refresh()
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#input"))
        if args.page_max_tokens and set_field(driver, "max-tokens", args.page_max_tokens):
            print(f"set #max-tokens to {args.page_max_tokens}", flush=True)
        box = driver.find_element(By.CSS_SELECTOR, "#input")
        send = driver.find_element(By.CSS_SELECTOR, "#send")
        driver.find_element(By.CSS_SELECTOR, "#messages")
        print(f"PASS page loaded: title {driver.title!r}", flush=True)

        for turn in range(1, args.turns + 1):
            message = args.message if turn == 1 else f"{args.message} (turn {turn})"
            wait.until(lambda d: box.is_enabled() and send.is_enabled())
            box.clear()
            box.send_keys(message)
            # Count the finished replies already there (a page may show a greeting), then send.
            before = len(driver.find_elements(By.CSS_SELECTOR, DONE))
            t0 = time.monotonic()
            send.click()
            try:
                reply = WebDriverWait(driver, args.reply_timeout, poll_frequency=0.2).until(lambda d: assistant_done(d, before))
            except TimeoutException:
                n = len(driver.find_elements(By.CSS_SELECTOR, "#messages .message.assistant"))
                failures.append(f"turn {turn}: no finished assistant reply within {args.reply_timeout} s "
                                f"({n} assistant elements, {len(driver.find_elements(By.CSS_SELECTOR, DONE))} done)")
                print(f"FAIL {failures[-1]}", flush=True)
                break
            text = reply_text(reply)
            finish = reply.get_attribute("data-finish-reason")
            if "error" in (reply.get_attribute("class") or "").split():
                failures.append(f"turn {turn}: the reply is marked as an error: {reply.text.strip()[:200]!r}")
            elif not text or text in ("(empty reply)", "(stopped)"):
                failures.append(f"turn {turn}: the finished assistant reply is empty ({text!r}; the page, or a "
                                f"model that ended at once: try another --message)")
            if failures:
                print(f"FAIL {failures[-1]}", flush=True)
                break
            print(f"PASS turn {turn}: reply in {time.monotonic() - t0:.2f} s"
                  + (f" (finish {finish})" if finish else "") + f": {text[:80]!r}", flush=True)

        # Everything the page loaded must come from the server itself (no CDNs; works offline).
        origin = urllib.parse.urlsplit(base_url)
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") or []
        foreign = [u for u in resources
                   if urllib.parse.urlsplit(u).netloc not in ("", origin.netloc) and not u.startswith(("data:", "blob:"))]
        if foreign:
            failures.append(f"the page loaded resources from other origins: {foreign[:5]}")
            print(f"FAIL {failures[-1]}", flush=True)
        else:
            print(f"PASS {len(resources)} resources, all same-origin", flush=True)

        errs = console_errors(driver)
        if errs:
            failures.append(f"{len(errs)} severe console messages, e.g. {errs[0].get('message', '')[:200]!r}")
            print(f"FAIL {failures[-1]}", flush=True)
        else:
            print("PASS no severe console errors", flush=True)
    except (WebDriverException, TimeoutException) as e:
        failures.append(f"browser: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        print(f"FAIL {failures[-1]}", flush=True)
    finally:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
            if driver.save_screenshot(args.screenshot):
                print(f"screenshot: {args.screenshot}", flush=True)
        except WebDriverException as e:
            print(f"could not save a screenshot: {e}", flush=True)
        driver.quit()
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=servelib.DEFAULT_BINARY, help="the swiftgpt executable (default: .build/release/swiftgpt)")
    ap.add_argument("--model", help="run folder to serve (starts a server)")
    ap.add_argument("--url", help="use a running server instead, e.g. http://127.0.0.1:8080")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for `swiftgpt serve` (repeatable)")
    ap.add_argument("--api-key", help="start the server with this key and enter it in the page's #api-key field")
    ap.add_argument("--page-max-tokens", type=int, default=16,
                    help="value for the page's #max-tokens setting, if it has one (default 16; 0 leaves it)")
    ap.add_argument("--message", default="Hello!", help="what to type (default 'Hello!')")
    ap.add_argument("--turns", type=int, default=2, help="messages to send, one after the other (default 2)")
    ap.add_argument("--reply-timeout", type=float, default=60.0, help="seconds to wait for each reply (default 60)")
    ap.add_argument("--screenshot", default="/tmp/swiftgpt-chat.png", help="where to save the screenshot")
    ap.add_argument("--chromium", help="Chromium executable (default: found on PATH)")
    ap.add_argument("--chromedriver", help="chromedriver executable (default: found on PATH)")
    ap.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the server's /health")
    args = ap.parse_args()
    if not args.url and not args.model:
        ap.error("give --model RUN (to start a server) or --url (to use a running one)")
    servelib.install_signal_handlers()

    server = None
    try:
        server, base_url = servelib.start_or_attach(args)
        if base_url is None:
            return 1
        try:
            failures = run(args, base_url)
        except RuntimeError as e:
            failures = [str(e)]
            print(f"FAIL {e}")
        if failures and server is not None:
            server.print_log_tail()
    finally:
        if server is not None:
            server.stop()
    print("RESULT: " + ("PASS" if not failures else f"FAIL ({len(failures)} problems)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
