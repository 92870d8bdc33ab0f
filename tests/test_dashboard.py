"""``/dashboard`` in a real browser: Debian's chromium, headless, driven by Playwright.

Real nodes on loopback, the page as a user opens it. chromium comes from
``make tools`` (skipped naming it where it cannot be installed; under
``CI=true``, a failure). The JSON the page reads is tested without a
browser too, in the last tests.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from node.local_cluster import LocalCluster

from .conftest import ClusterFactory, require_tools
from .http_call import call

# Fast detection, so a death shows within the test's patience.
FAST_HEALTH = ("--health-interval", "0.25", "--health-failures", "2")
TOKEN = "dashboard-secret"
# A Chromium without the background networking that this closed machine refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_tools(["chromium"])
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()  # a tab of its own: its own session storage
    yield context.new_page()
    context.close()


def _rows(page: Page) -> dict[str, str]:
    """member -> status, as the members table shows them."""
    rows = page.locator("#members tbody tr")
    return {
        rows.nth(i).get_attribute("data-member") or "": rows.nth(i).get_attribute("data-status")
        or ""
        for i in range(rows.count())
    }


def _wait_for_rows(page: Page, count: int) -> None:
    # Selectors, not scripts: the page's Content-Security-Policy forbids eval,
    # which Playwright's wait_for_function would need.
    page.wait_for_selector(f"#members tbody tr:nth-child({count})")
    assert page.locator("#members tbody tr").count() == count


def _open(page: Page, cluster: LocalCluster) -> None:
    page.goto(f"{cluster.nodes[0].url}/dashboard")


def test_the_page_lists_every_member_and_the_ring_shares_add_up(
    page: Page, make_cluster: ClusterFactory
) -> None:
    cluster = make_cluster(3)
    loaded: list[int] = []
    page.on("response", lambda response: loaded.append(len(response.body())))
    _open(page, cluster)
    _wait_for_rows(page, 3)
    assert _rows(page) == dict.fromkeys(cluster.members, "alive")
    shares = page.locator("#members td.share")
    raw = [float(shares.nth(i).get_attribute("data-share") or "nan") for i in range(3)]
    shown = [float(shares.nth(i).inner_text().rstrip("%")) for i in range(3)]
    assert sum(raw) == pytest.approx(1.0, abs=1e-9)
    assert sum(shown) == pytest.approx(100.0, abs=0.15)  # three figures rounded to 0.1
    assert page.locator("#ring path").count() == 3
    assert page.locator("#legend li").count() == 3
    # Every colour has its word: the status is written, not only coloured.
    assert page.locator("#members td.status").first.inner_text() == "alive"
    assert page.locator("#events li").count() >= 1
    # The page and everything it loaded (its state included) stay small.
    page.wait_for_timeout(2500)  # a second poll
    assert 0 < sum(loaded) < 100 * 1024, loaded


def test_a_killed_node_shows_as_suspect_or_dead(page: Page, make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(3, args=FAST_HEALTH)
    _open(page, cluster)
    _wait_for_rows(page, 3)
    victim = cluster.nodes[2]
    victim.kill()
    # Detection takes 2 x 0.25 s x 2 plus the timeouts; the page polls every 2 s.
    row = f'#members tr[data-member="{victim.member}"]'
    page.wait_for_selector(
        f'{row}:is([data-status="suspect"], [data-status="dead"])', timeout=15_000
    )
    status = _rows(page)[victim.member]
    cell = page.locator(f'#members tr[data-member="{victim.member}"] td.status')
    assert cell.inner_text() == status


def test_a_wrong_token_shows_why_and_the_right_one_shows_the_cluster(
    page: Page, make_cluster: ClusterFactory
) -> None:
    cluster = make_cluster(3, token=TOKEN)
    _open(page, cluster)
    page.wait_for_selector("#login:not([hidden])")
    assert "needs a token" in page.locator("#problem").inner_text()
    page.fill("#token", "not-the-token")
    page.click("#login button")
    page.wait_for_selector("#problem:has-text('refused')")
    assert "401" in page.locator("#problem").inner_text()
    assert page.locator("#members tbody tr").count() == 0
    page.fill("#token", TOKEN)
    page.click("#login button")
    _wait_for_rows(page, 3)
    assert page.locator("#problem").inner_text() == ""
    # Kept for the tab: a reload asks no more.
    page.reload()
    _wait_for_rows(page, 3)


# -- without a browser


def test_the_page_is_public_and_its_state_guarded_like_stats(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(1, token=TOKEN)
    member = cluster.nodes[0].member
    page = call(member, "GET", "/dashboard")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert call(member, "GET", "/dashboard/state").status == 401
    assert call(member, "GET", "/stats").status == 401
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    state = call(member, "GET", "/dashboard/state", headers=authorized).json()
    assert [m["id"] for m in state["members"]] == [member]


def test_the_state_has_every_members_figures_and_the_events(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(3)
    # Counted once keys stopped moving: until then a write also goes to the
    # owners under the rings just before (README: Surviving), and a key is
    # counted twice.
    cluster.wait_settled()
    for n in range(30):
        assert call(cluster.nodes[0].member, "PUT", f"/kv/dash-{n}", b"v").status == 204
    state = call(cluster.nodes[1].member, "GET", "/dashboard/state").json()
    members = {m["id"]: m for m in state["members"]}
    assert sorted(members) == sorted(cluster.members)
    assert sum(m["share"] for m in members.values()) == pytest.approx(1.0)
    # Each node's own counters, asked of it with the peer credentials.
    assert sum(m["counters"]["items"] for m in members.values()) == 30
    assert all(m["status"] == "alive" and m["incarnation"] > 0 for m in members.values())
    assert any("ready" in event["text"] for event in state["events"])
    cluster.nodes[2].kill()
    state = call(cluster.nodes[1].member, "GET", "/dashboard/state").json()
    gone = next(m for m in state["members"] if m["id"] == cluster.nodes[2].member)
    assert "error" in gone["counters"]  # shown as unreachable, the others still shown
