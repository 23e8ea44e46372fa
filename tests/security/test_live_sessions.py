"""Logging out and changing a password close the live websockets of that login (issue 13, item 4).

Finding: a websocket kept streaming after its user logged out. Through the whole ASGI application (origin check,
session authentication, the consumer and its hub on the in-memory channel layer) with real sessions.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from bms.asgi import application
from bms.engine import bus
from bms.realtime import hub as live_hub
from bms.realtime import revocation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def layer():
    channel_layer = get_channel_layer()
    await channel_layer.flush()
    yield channel_layer
    await live_hub.stop_hub()


async def browser_of(username: str) -> tuple[Client, User]:
    """A browser with a session of ``username`` (created if need be), as the login page leaves it."""
    user, _ = await User.objects.aget_or_create(username=username)
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    return browser, user


async def live_socket(browser: Client, layer, answer: bool = True) -> WebsocketCommunicator:
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in browser.cookies.items())
    headers = [(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    socket = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, code = await socket.connect()
    assert connected, code
    if answer:  # the first client's hub asks the engine (played here) for the image
        request = await asyncio.wait_for(layer.receive(bus.engine_channel()), 2)
        await layer.send(request["reply_to"], {"type": bus.LIVE_SNAPSHOT, "seq": 1, "points": {}})
    assert (await socket.receive_json_from(timeout=2))["type"] == "snapshot"
    return socket


async def closed_with(socket: WebsocketCommunicator) -> tuple[dict, int]:
    error = await socket.receive_json_from(timeout=2)
    closing = await socket.receive_output(timeout=2)
    assert closing["type"] == "websocket.close"
    return error, closing["code"]


async def test_logout_closes_that_sessions_websockets_only(layer):
    browser, _ = await browser_of("otto")
    socket = await live_socket(browser, layer)
    second_tab = await live_socket(browser, layer, answer=False)
    elsewhere, _ = await browser_of("otto")  # the same user on another machine: its own session
    other_session = await live_socket(elsewhere, layer, answer=False)
    other_user = await live_socket((await browser_of("vera"))[0], layer, answer=False)

    response = await sync_to_async(browser.post)("/logout/")
    assert response.status_code == 302
    for each in (socket, second_tab):
        error, code = await closed_with(each)
        assert error["code"] == "logged_out" and code == revocation.CLOSE_LOGGED_OUT
    for each in (other_session, other_user):
        await each.send_json_to({"type": "ping"})
        assert await each.receive_json_from(timeout=2) == {"type": "pong"}
        await each.disconnect()
    # and the logged-out browser cannot open a new one
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in browser.cookies.items())
    again = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1")]
    )
    assert await again.connect() == (False, 4401)


async def test_a_password_change_closes_all_of_the_users_websockets(layer):
    browser, user = await browser_of("otto")
    socket = await live_socket(browser, layer)
    elsewhere, _ = await browser_of("otto")
    other_session = await live_socket(elsewhere, layer, answer=False)
    bystander = await live_socket((await browser_of("vera"))[0], layer, answer=False)

    user.set_password("a-new-password-9")
    await user.asave()
    for each in (socket, other_session):
        error, code = await closed_with(each)
        assert error["code"] == "logged_out" and code == revocation.CLOSE_LOGIN_CHANGED
    await bystander.send_json_to({"type": "ping"})
    assert await bystander.receive_json_from(timeout=2) == {"type": "pong"}
    await bystander.disconnect()
    # the sessions made with the old password are over: a reconnection is refused
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in elsewhere.cookies.items())
    again = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1")]
    )
    assert await again.connect() == (False, 4401)


async def test_saving_a_user_without_a_new_password_closes_nothing(layer):
    browser, user = await browser_of("otto")
    socket = await live_socket(browser, layer)
    user.first_name = "Otto"
    await user.asave()
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=2) == {"type": "pong"}
    await socket.disconnect()
