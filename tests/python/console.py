"""Clients of the web console for the tests: a browser (Debian's headless Chromium, driven by
selenium) and a plain HTTPS session that keeps cookies and reads forms, for what a browser
would not send (a form without its token, another session's token, a flood of wrong passwords).

Screenshots go to $KOALA_ARTIFACTS (default target/test-artifacts) under console/.
"""

import email
import email.policy
import http.client
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.parse

from conftest import REPO, free_port

ARTIFACTS = os.environ.get("KOALA_ARTIFACTS") or os.path.join(REPO, "target", "test-artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def artifact_dir(*parts):
    path = os.path.join(ARTIFACTS, "console", *parts)
    os.makedirs(path, exist_ok=True)
    return path


def cloud_context(cloud):
    """A TLS context trusting only the cloud's CA (the certificate the console must show)."""
    return ssl.create_default_context(
        cafile=os.path.join(cloud.data_dir, "keys", "cloud-cert.pem"))


class Answer:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.body = raw.decode("utf-8", "replace")

    def header(self, name):
        return self.headers.get(name.lower())

    def csrf(self):
        m = re.search(r'name="csrf" value="([^"]*)"', self.body)
        assert m, f"no CSRF token in the page:\n{self.body[:2000]}"
        return m.group(1)

    def error(self):
        """The text of the page's error messages (class="error"), joined."""
        return " ".join(re.findall(r'class="error"[^>]*>([^<]*)<', self.body))


class Session:
    """One browser's worth of cookies against the console, over HTTPS verified with the
    cloud's CA. Redirects are not followed: tests look at them."""

    def __init__(self, cloud):
        url = urllib.parse.urlsplit(cloud.console_url)
        self.host, self.port = url.hostname, url.port
        self.context = cloud_context(cloud)
        self.cookies = {}
        self.set_cookie_headers = []

    def request(self, method, path, form=None, headers=None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                           timeout=30)
        hdrs = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            hdrs["Origin"] = f"https://{self.host}:{self.port}"
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                self.set_cookie_headers.append(value)
                pair = value.split(";", 1)[0]
                k, _, v = pair.partition("=")
                if "Max-Age=0" in value:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        headers = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        return Answer(resp.status, headers, data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, form, **kw):
        return self.request("POST", path, form=form, **kw)

    def follow(self, url):
        """Opens a mail's link as a person does: the page it shows (GET), then its button
        (POST with the page's token). Returns (page, answer)."""
        path = urllib.parse.urlsplit(url).path
        page = self.get(path)
        if page.status != 200:
            return page, page
        return page, self.post(path, {"csrf": page.csrf()})

    def apply(self, name, email_address, password, full_name="Ada Lovelace", notes=""):
        token = self.get("/apply").csrf()
        return self.post("/apply", {
            "csrf": token, "name": name, "full_name": full_name, "email": email_address,
            "password": password, "password2": password, "notes": notes})

    def sign_in(self, name, password):
        token = self.get("/login").csrf()
        return self.post("/login", {"csrf": token, "name": name, "password": password})


def sign_in_admin(cloud, password):
    """A session of the cloud admin, doing the first run with `password` when it is due."""
    s = Session(cloud)
    answer = s.sign_in("admin", password)
    if answer.status == 401:
        answer = s.sign_in("admin", "admin")
        assert answer.status == 303, answer.body
    if answer.header("location") == "/first-run":
        token = s.get("/first-run").csrf()
        done = s.post("/first-run", {
            "csrf": token, "password": password, "password2": password,
            "email": "admin@cloud.test", "walrus_url": cloud.s3_url})
        assert (done.status, done.header("location")) == (303, "/"), done.body
    return s


LINK = re.compile(r"https://\S+?/(approve|reject|activate|apply)(?:/[A-Za-z0-9_-]+)?")


class MailCatcher:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.messages = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def wait_for(self, to, subject, timeout=30):
        """The first message to `to` whose subject contains `subject`: (subject, text)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for rcpts, message in self.messages:
                    if to in rcpts and subject in message["subject"]:
                        return message["subject"], message.get_content()
            time.sleep(0.1)
        with self.lock:
            seen = [(r, m["subject"]) for r, m in self.messages]
        raise AssertionError(f"no mail to {to} about {subject!r} within {timeout} s; got {seen}")

    def count(self, to):
        with self.lock:
            return sum(1 for rcpts, _ in self.messages if to in rcpts)

    def stop(self):
        self.controller.stop()


def links_in(text):
    """The console links in a mail's text, by what they do: {"approve": URL, ...}."""
    return {m.group(1): m.group(0) for m in LINK.finditer(text)}


def sign_up(cloud, mail, name, password, admin_mail="admin@cloud.test"):
    """A new account `name` made the way a person makes one: apply, the administrator's
    approve link, the applicant's activation link (mail caught by `mail`)."""
    s = Session(cloud)
    address = f"{name}@example.test"
    assert s.apply(name, address, password).status == 200
    links = links_in(mail.wait_for(admin_mail, f"{name} applies")[1])
    _, done = s.follow(links["approve"])
    assert done.status == 200, done.body
    activate = links_in(mail.wait_for(address, "approved")[1])["activate"]
    _, done = s.follow(activate)
    assert done.status == 200 and "ready" in done.body, done.body


class Browser:
    """Headless Chromium from Debian. The cloud's certificate is self-signed by its own CA,
    which a person accepts on the first visit: so does this browser (acceptInsecureCerts)."""

    def __init__(self, shots, downloads=None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a driver
        self.profile = tempfile.TemporaryDirectory(prefix="koala-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900", f"--user-data-dir={self.profile.name}"):
            options.add_argument(arg)
        options.accept_insecure_certs = True
        if downloads:
            options.add_experimental_option("prefs", {
                "download.default_directory": downloads, "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        if downloads:
            self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                        {"behavior": "allow", "downloadPath": downloads})
        self.driver.set_page_load_timeout(30)
        self.shots = shots
        self.count = 0

    def open(self, url):
        self.driver.get(url)

    @property
    def path(self):
        return urllib.parse.urlsplit(self.driver.current_url).path

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        return self.find(css).text

    def fill(self, **fields):
        for name, value in fields.items():
            box = self.find(f'[name="{name}"]')
            box.clear()
            box.send_keys(value)

    def submit(self, form_css="main form"):
        """Clicks the form's (first) button and waits for the page it leads to."""
        self.press(f"{form_css} button[type=submit]")

    def press(self, button_css):
        """Clicks a button and waits for the page it leads to: a new document (whose window
        lacks the mark set on the old one) fully loaded."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver.execute_script("window.koalaOldPage = true;")
        self.find(button_css).click()
        WebDriverWait(self.driver, 30, ignored_exceptions=[WebDriverException]).until(
            lambda d: d.execute_script(
                "return !window.koalaOldPage && document.readyState === 'complete';"))

    def sign_in(self, cloud, name, password):
        """Opens the cloud's sign-in page and signs in as `name`."""
        self.open(cloud.console_url + "login")
        self.fill(name=name, password=password)
        self.submit()

    def shot(self, name):
        self.count += 1
        path = os.path.join(self.shots, f"{self.count:02d}-{name}.png")
        self.driver.save_screenshot(path)
        return path

    def close(self):
        self.driver.quit()
        self.profile.cleanup()
