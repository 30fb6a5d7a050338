"""`jghub simulate SYSTEM...`: run simulated external systems against a hub, until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from hub.commands.options import SystemsFile
from hub.settings import HubSettings
from hub.simulators.clients import OutboxPuller, SystemClient
from hub.simulators.landscape import build_landscape
from hub.simulators.server import LoopbackServer
from hub.simulators.sources import SimulatedSource
from hub.simulators.targets import FailurePlan, SimulatedTarget
from hub.simulators.traffic import SystemTraffic
from hub.systems import SystemsConfig, SystemsConfigError, load_systems
from mappings import load_all
from systems import ChannelConfig


def simulate(
    systems: Annotated[list[str], typer.Argument(help="The systems to simulate (ids).")],
    hub: Annotated[
        str | None,
        typer.Option(help="The hub's base URL; with it, the systems push traffic and pull."),
    ] = None,
    systems_file: SystemsFile = None,
    landscape: Annotated[
        bool,
        typer.Option(
            help="Use the demo's landscape (every system wired to simulators, keys generated "
            "and printed) instead of a systems file."
        ),
    ] = False,
    records: Annotated[int, typer.Option(help="Records per pushed batch.", min=1)] = 10,
    interval: Annotated[float, typer.Option(help="Seconds between pushes.", min=0.01)] = 2.0,
    invalid_share: Annotated[
        float, typer.Option(help="Share of records spoiled on purpose.", min=0, max=1)
    ] = 0.1,
    fail_share: Annotated[
        float, typer.Option(help="Share of deliveries answered 503.", min=0, max=1)
    ] = 0.0,
    reject_share: Annotated[
        float, typer.Option(help="Share of deliveries refused (4xx).", min=0, max=1)
    ] = 0.0,
    timeout_share: Annotated[
        float, typer.Option(help="Share of deliveries held past the timeout.", min=0, max=1)
    ] = 0.0,
    delay: Annotated[float, typer.Option(help="Delay before every answer (s).", min=0)] = 0.0,
) -> None:
    """Run simulated external systems against a hub, until Ctrl-C.

    The systems are receivers where the configuration says the hub delivers to them (REST or
    SOAP, recording what arrives, failing as told), pull APIs where the hub's pollers read them
    (new changes every interval), outbox pullers and, with --hub, pushers sending batches grown
    from their samples in their own protocol.

    The receivers listen on the host and port of each system's outbound URL; the keys come from
    the environment variables the configuration names. A receiver's failures can be changed
    while it runs: POST {"error_share": 0.3} to <its URL>/_simulator/plan.
    """
    console = Console(highlight=False)
    logging.basicConfig(level=logging.WARNING)
    mappings = load_all(HubSettings().mappings_root)
    if landscape:
        filled = build_landscape(mappings)
        filled.apply_environment()
        config: SystemsConfig = filled.systems
        for name, value in filled.environment.items():
            console.print(f"{name}={value}")
    else:
        try:
            config = load_systems(systems_file or HubSettings().systems_file)
        except SystemsConfigError as error:
            console.print(f"[red]{escape(str(error))}[/red]")
            raise typer.Exit(2) from None
    chosen = []
    for system_id in systems:
        try:
            chosen.append(config.system(system_id))
        except KeyError as error:
            raise typer.BadParameter(str(error.args[0]), param_hint="SYSTEMS") from None
        if chosen[-1].auth.scheme == "internal":
            raise typer.BadParameter(
                f"{system_id} runs inside the hub (the worker runs it); there is nothing to "
                "simulate",
                param_hint="SYSTEMS",
            )
    plan = FailurePlan(
        error_share=fail_share,
        reject_share=reject_share,
        timeout_share=timeout_share,
        delay_s=delay,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    servers: list[LoopbackServer] = []
    threads: list[threading.Thread] = []
    pushers: list[tuple[SystemClient, list[tuple[ChannelConfig, SystemTraffic]]]] = []
    targets: list[SimulatedTarget] = []
    sources: list[SimulatedSource] = []
    for system in chosen:
        if any(channel.adapter == "rest_poller" for channel in system.inbound):
            source = SimulatedSource(
                system, mappings[system.mapping_id], records=records, invalid_share=invalid_share
            )
            servers.append(
                LoopbackServer(
                    source.app, host=source.host, port=source.port, name=system.id
                ).start()
            )
            sources.append(source)
            console.print(
                f"{system.id}: serving its pull API at http://{source.host}:{source.port}"
            )
        if system.outbound is not None and system.outbound.adapter != "outbox":
            target = SimulatedTarget(system, plan)
            server = LoopbackServer(target.app, host=target.host, port=target.port, name=system.id)
            servers.append(server.start())
            targets.append(target)
            console.print(f"{system.id}: receiving at http://{target.host}:{target.port}")
        if hub is None:
            continue
        if system.outbound is not None and system.outbound.adapter == "outbox":
            puller = OutboxPuller(system, hub)
            thread = threading.Thread(target=puller.run, args=(stop,), daemon=True)
            thread.start()
            threads.append(thread)
            console.print(f"{system.id}: pulling its outbox from {hub}")
        client = SystemClient(system, hub)
        folder = mappings[system.mapping_id]
        channels: list[tuple[ChannelConfig, SystemTraffic]] = []
        for channel in client.channels:
            try:
                channels.append((channel, SystemTraffic(folder, channel.message_type)))
            except ValueError as error:
                console.print(f"[yellow]{system.id}: {escape(str(error))}[/yellow]")
        if channels:
            pushers.append((client, channels))
            console.print(f"{system.id}: pushing {', '.join(c.message_type for c, _ in channels)}")
    if not servers and not threads and not pushers and not sources:
        console.print("nothing to run: no receiving end and no --hub to push to")
        raise typer.Exit(1)
    round_number = 0
    try:
        while not stop.is_set():
            round_number += 1
            for client, channels in pushers:
                channel, traffic = channels[round_number % len(channels)]
                payload = traffic.batch(records, invalid_share=invalid_share)
                try:
                    outcome = client.push(channel, payload)
                except Exception as error:  # a simulator reports and keeps going
                    console.print(f"[red]{client.system.id}: {escape(repr(error))}[/red]")
                    continue
                refused = f" refused: {outcome.refused}" if outcome.refused else ""
                console.print(
                    f"{time.strftime('%H:%M:%S')} {client.system.id} {channel.message_type}: "
                    f"{outcome.accepted} accepted, {outcome.rejected} rejected{refused}"
                )
            for source in sources:
                source.add(records)  # new changes for the pollers to find
            stop.wait(interval)
    finally:
        for server in servers:
            server.stop()
        for thread in threads:
            thread.join(timeout=5)
        for target in targets:
            console.print(
                f"{target.system.id}: received {target.log.counts()}, "
                f"{target.log.duplicates()} duplicate(s)"
            )
        for source in sources:
            console.print(f"{source.system.id}: {source.counts()}")
