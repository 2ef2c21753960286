"""Running the simulator: the HTTPS server, host routing, faults, the ticker, ``sim.json``.

Role: bind one HTTPS port on 127.0.0.1 and route by Host header (port ignored):
``login.sim.test`` → Entra, ``management.sim.test`` → ARM (and ``/_sim/`` → control API),
``{vault}.vault.sim.test`` → Key Vault, ``{account}.{region}.batch.sim.test`` → Batch. A root
middleware advances the simulation and applies injected faults before any service sees the
request. Two ways to run it: ``serve`` (foreground, the ``batchcert-dev sim`` command) and
``run_simulator`` / ``SimulatorThread`` (in-process, on a background thread with its own event
loop, so tests can call it with the blocking Azure SDK clients).

Invariants:
* ``DIR/sim.json`` is written only once the port accepts connections, and removed on a clean
  stop, so its presence means "a simulator is (or was just) serving here";
* stopping cancels the ticker, closes the listener and all connections, and (with a state dir
  the caller chose) saves the state: no task, thread or port outlives the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from batchsim import seed
from batchsim.arm import authorization as armauthorization
from batchsim.arm import batch as armbatch
from batchsim.arm import resources as armresources
from batchsim.arm.errors import ArmError, arm_error_response
from batchsim.arm.pipeline import LRO_FAILURE, ArmService
from batchsim.batch.service import BatchDataService, batch_error_body
from batchsim.clock import SimClock
from batchsim.control.api import build_control_app
from batchsim.core import (
    BATCH_SUFFIX,
    LOGIN_HOST,
    MANAGEMENT_HOST,
    VAULT_SUFFIX,
    Simulation,
)
from batchsim.entra.service import build_entra_app
from batchsim.hostaliases import install_host_aliases
from batchsim.requestlog import CALLER_USER_AGENT, REQUEST_RECEIVED
from batchsim.tls import SimTls

log = logging.getLogger(__name__)

_TICK_INTERVAL_S = 0.1
_TOKEN_FILE_REFRESH_S = 600.0
_AUTOSAVE_INTERVAL_S = 5.0


def service_of(host: str, path: str) -> str | None:
    name = host.rsplit(":", 1)[0].lower().rstrip(".")
    if name == LOGIN_HOST:
        return "entra"
    if name == MANAGEMENT_HOST:
        return "control" if path.startswith("/_sim/") or path == "/_sim" else "arm"
    if name.endswith("." + VAULT_SUFFIX):
        return "keyvault"
    if name.endswith("." + BATCH_SUFFIX):
        return "batch"
    return None


def _fault_response(
    sim: Simulation,
    service: str,
    request: web.Request,
    status: int,
    body: Any,
    headers: dict[str, str],
) -> web.Response:
    if body is None:
        code = {
            429: "TooManyRequests",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }.get(status, "InjectedFault")
        message = f"Injected fault: HTTP {status}."
        if service == "batch":
            body = batch_error_body(request.host, code, message, [], "injected", sim.clock.now())
        elif service == "entra":
            body = {"error": "temporarily_unavailable", "error_description": message}
        else:  # ARM and Key Vault share the {"error": {"code", "message"}} shape
            body = {"error": {"code": code, "message": message}}
    if isinstance(body, (dict, list)):
        return web.json_response(body, status=status, headers=headers)
    return web.Response(status=status, text=str(body), headers=headers)


def build_app(
    sim: Simulation,
    tls: SimTls,
    *,
    reset: Callable[[str], dict[str, Any]],
    save: Callable[[], None],
    info: Callable[[], dict[str, Any]],
) -> web.Application:
    @web.middleware
    async def simulate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        service = service_of(request.host, request.path)
        if service is None or service == "control":
            try:
                return await handler(request)
            finally:
                sim.publish_hosts()  # a vault added or removed is resolvable (or not) at once
        CALLER_USER_AGENT.set(request.headers.get("User-Agent"))
        REQUEST_RECEIVED.set(sim.clock.now())
        sim.tick()
        rule = sim.faults.match(service, request.method, request.path)
        if rule is not None:
            if rule.latency_s:
                await asyncio.sleep(rule.latency_s)
            if rule.drop:
                sim.log.record(
                    service,
                    "InjectedDrop",
                    request.method,
                    request.path,
                    dict(request.query),
                    request.query.get("api-version"),
                    0,
                    None,
                )
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError()
            if rule.status is not None:
                sim.log.record(
                    service,
                    "InjectedFault",
                    request.method,
                    request.path,
                    dict(request.query),
                    request.query.get("api-version"),
                    rule.status,
                    None,
                )
                return _fault_response(sim, service, request, rule.status, rule.body, rule.headers)
            if rule.lro_failure is not None:
                request[LRO_FAILURE] = dict(rule.lro_failure)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if service == "arm":
                return arm_error_response(ArmError(exc.status, "NotFound", exc.reason))
            raise
        finally:
            if service == "arm":
                sim.publish_hosts()

    def record_entra(
        operation: str, request: web.Request, status: int, principal: str | None, body: Any
    ) -> None:
        sim.log.record(
            "entra",
            operation,
            request.method,
            request.path,
            dict(request.query),
            None,
            status,
            principal,
            body=body,
        )

    root = web.Application(middlewares=[simulate])
    root.add_domain(
        LOGIN_HOST,
        build_entra_app(sim.directory, sim.tokens, lambda: sim.authority_host, record_entra),
    )
    management = web.Application()
    management.add_subapp("/_sim/", build_control_app(sim, reset=reset, save=save, info=info))
    arm = ArmService(sim, armbatch.routes() + armresources.routes() + armauthorization.routes())
    management.router.add_route("*", "/{tail:.*}", arm.handle)
    root.add_domain(MANAGEMENT_HOST, management)
    kv_app = web.Application()
    kv_app.router.add_route("*", "/{tail:.*}", sim.kv.handle)  # type: ignore[attr-defined]
    root.add_domain(f"*.{VAULT_SUFFIX}", kv_app)
    batch_app = web.Application()
    batch_app.router.add_route("*", "/{tail:.*}", BatchDataService(sim).handle)
    root.add_domain(f"*.{BATCH_SUFFIX}", batch_app)

    async def unknown_host(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": f"no simulated service at host '{request.host}'"}, status=404
        )

    root.router.add_route("*", "/{tail:.*}", unknown_host)
    return root


@dataclass
class SimOptions:
    state_dir: Path | None = None  # None: a private temporary dir, removed on stop
    port: int = 0
    seed: str = "none"  # "none" | "demo"
    clock_scale: float = 1.0
    host: str = "127.0.0.1"


class SimulatorRuntime:
    """One simulator's lifetime on the current event loop (used by both run modes)."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._own_dir = options.state_dir is None
        self.state_dir = (
            Path(tempfile.mkdtemp(prefix="batchcert-sim-"))
            if options.state_dir is None
            else Path(options.state_dir)
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sim_json = self.state_dir / "sim.json"
        self.tls = SimTls(self.state_dir)
        self._sock = self._bind()
        self.port: int = self._sock.getsockname()[1]
        self.sim = self._new_simulation()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    def _bind(self) -> socket.socket:
        port = self.options.port
        if port == 0:
            # Reuse the previous run's port, so clients holding the old addresses keep working.
            for previous in (self.sim_json, self.state_dir / "state.json"):
                with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                    port = int(json.loads(previous.read_text())["port"])
                    break
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.options.host, port))
        except OSError:
            if self.options.port != 0:
                sock.close()
                raise
            sock.bind((self.options.host, 0))
        sock.listen(256)
        sock.setblocking(False)
        return sock

    def _new_simulation(self) -> Simulation:
        sim = Simulation(
            port=self.port, clock=SimClock(scale=self.options.clock_scale), state_dir=self.state_dir
        )
        if not self._own_dir:
            sim.load_state()
            sim.clock.set_scale(self.options.clock_scale)
        if self.options.seed == "demo":
            seed.seed_demo(sim)
        elif self.options.seed != "none":
            raise ValueError(f"unknown seed {self.options.seed!r} (demo | none)")
        sim.write_federated_token()
        return sim

    def info(self) -> dict[str, Any]:
        info = self.sim.info(str(self.tls.ca_bundle))
        if (
            self.sim.world.account(
                seed.DEMO_SUBSCRIPTION, seed.DEMO_RESOURCE_GROUP, seed.DEMO_ACCOUNT
            )
            is not None
        ):
            info["demo"] = seed.demo_ids(self.sim)
        return info

    def reset(self, seed_name: str) -> dict[str, Any]:
        sim = self.sim
        sim.world = type(sim.world)(sim.tenant_id)
        sim.mark_dirty()
        sim.kv.restore({"version": 1, "vaults": []})
        sim.log.clear()
        sim.faults.clear()
        sim.arm_throttle.reset()
        sim.kv_throttle.reset()
        sim.clock.set_scale(self.options.clock_scale)
        sim.directory.apps.clear()
        sim.register_default_principals()
        if seed_name == "demo":
            seed.seed_demo(sim)
        elif seed_name != "none":
            raise ValueError(f"unknown seed {seed_name!r} (demo | none)")
        self._write_sim_json()
        return self.info()

    def save(self) -> None:
        if not self._own_dir:
            self.sim.save_state()

    def _write_sim_json(self) -> None:
        self.sim.publish_hosts()  # before sim.json names the file
        tmp = self.sim_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info(), indent=2))
        os.replace(tmp, self.sim_json)

    async def start(self) -> None:
        app = build_app(self.sim, self.tls, reset=self.reset, save=self.save, info=self.info)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.SockSite(self._runner, self._sock, ssl_context=self.tls.server_context)
        await site.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="batchcert-sim-ticker")
        self._write_sim_json()
        log.info(
            "Azure simulator serving on https://%s:%s (state dir %s)",
            self.options.host,
            self.port,
            self.state_dir,
        )

    async def _tick_forever(self) -> None:
        last_token = last_save = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_INTERVAL_S)
            try:
                self.sim.tick()
                now = time.monotonic()
                if now - last_token >= _TOKEN_FILE_REFRESH_S:
                    self.sim.write_federated_token()
                    last_token = now
                if not self._own_dir and now - last_save >= _AUTOSAVE_INTERVAL_S:
                    self.sim.save_state()
                    last_save = now
            except Exception:  # keep ticking; a bad tick must not stop the world
                log.exception("simulator tick failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sock.close()
        self.save()
        with contextlib.suppress(FileNotFoundError):
            self.sim_json.unlink()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


async def serve(options: SimOptions, stop: asyncio.Event | None = None) -> None:
    """Run in the foreground until ``stop`` is set (or the task is cancelled)."""
    runtime = SimulatorRuntime(options)
    await runtime.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runtime.stop()


class SimulatorThread:
    """A simulator on a background thread with its own event loop (in-process use)."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.runtime: SimulatorRuntime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batchcert-sim", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.runtime = SimulatorRuntime(self.options)
                await self.runtime.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.runtime.stop()

        asyncio.run(main())

    def start(self, timeout: float = 30.0) -> SimulatorRuntime:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        assert self.runtime is not None
        return self.runtime

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the simulator did not stop in time")

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the simulator's loop thread (for direct state access from tests)."""
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)


@dataclass
class RunningSimulator:
    """What ``run_simulator`` yields: addresses, CA, control client, and the live state."""

    thread: SimulatorThread
    runtime: SimulatorRuntime
    info: dict[str, Any]

    @property
    def sim(self) -> Simulation:
        return self.runtime.sim

    @property
    def port(self) -> int:
        return self.runtime.port

    @property
    def ca_bundle(self) -> str:
        return str(self.runtime.tls.ca_bundle)

    @property
    def sim_json(self) -> Path:
        return self.runtime.sim_json

    @property
    def control(self) -> Any:
        from batchsim.client import SimControl

        return SimControl(self.sim_json)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.thread.call(fn)


def _options(state_dir: Path | str | None, port: int, seed: str, clock_scale: float) -> SimOptions:
    return SimOptions(
        state_dir=Path(state_dir) if state_dir is not None else None,
        port=port,
        seed=seed,
        clock_scale=clock_scale,
    )


@contextlib.contextmanager
def simulator(
    *,
    state_dir: Path | str | None = None,
    port: int = 0,
    seed: str = "none",
    clock_scale: float = 1.0,
) -> Iterator[RunningSimulator]:
    """Synchronous form of ``run_simulator``."""
    thread = SimulatorThread(_options(state_dir, port, seed, clock_scale))
    runtime = thread.start()
    install_host_aliases({"*.sim.test": "127.0.0.1"})
    try:
        yield RunningSimulator(thread, runtime, runtime.info())
    finally:
        thread.stop()


@contextlib.asynccontextmanager
async def run_simulator(
    *,
    state_dir: Path | str | None = None,
    port: int = 0,
    seed: str = "none",
    clock_scale: float = 1.0,
) -> AsyncIterator[RunningSimulator]:
    """``async with run_simulator(seed="demo") as sim:`` — a simulator on its own thread."""
    thread = SimulatorThread(_options(state_dir, port, seed, clock_scale))
    runtime = await asyncio.to_thread(thread.start)
    install_host_aliases({"*.sim.test": "127.0.0.1"})
    try:
        yield RunningSimulator(thread, runtime, runtime.info())
    finally:
        await asyncio.to_thread(thread.stop)
