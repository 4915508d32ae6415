"""Settings, capabilities and QuickFIX session configuration of the FIX broker (cheap to import: no quickfix).

``session_config`` renders the ``.cfg`` text QuickFIX reads, for the initiator (the adapter) and for the
acceptor (the local venue), from one set of facts, so the two sides cannot disagree on a setting.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Final

from brokers.base import BrokerCapabilities
from brokers.fix.dictionary import relax_dictionary
from core.domain import OrderType, TimeInForce
from core.errors import ConfigError
from core.settings import FixSettings, Settings

__all__ = [
    "FIX_CAPABILITIES",
    "FixSettings",
    "SessionConfig",
    "data_dictionary_dir",
    "session_config_for",
    "session_key",
    "store_dir_for",
]

#: Order types the FIX adapter does not send: the touched types (OrdType J has no counterpart in the FIX venue).
FIX_UNSUPPORTED_TYPES: Final = frozenset({OrderType.MARKET_IF_TOUCHED, OrderType.LIMIT_IF_TOUCHED})
#: Times in force the FIX adapter does not send: at the open / at the close (TimeInForce 2 and 7; the FIX venue
#: has no auctions).
FIX_UNSUPPORTED_TIF: Final = frozenset({TimeInForce.OPG, TimeInForce.CLS})

FIX_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(OrderType) - FIX_UNSUPPORTED_TYPES - {OrderType.TRAILING_STOP},  # trailing stops emulated
    time_in_force=frozenset(TimeInForce) - FIX_UNSUPPORTED_TIF,
    supports_replace=True,
    # FIX venues refuse a second order under a ClOrdID (OrdRejReason 6); the adapter never reuses one blindly.
    dedupes_cl_ord_id=True,
    # FIX positions are not asked (no RequestForPositions); fills come from the session's report journal.
    reports_positions=False,
    reports_fills=True,
    # open_orders() is one OrderMassStatusRequest (35=AF); a venue without AF is asked order by order inside it, so
    # the owning worker's sweep (worker/sweep.py) stays right either way and FIX orders arm no poll timer.
    mass_status=True,
)

_DICTIONARIES = {"FIX.4.2": "FIX42.xml", "FIX.4.4": "FIX44.xml", "FIXT.1.1": "FIXT11.xml"}
_APP_DICTIONARIES = {"FIX.5.0SP2": "FIX50SP2.xml"}


def data_dictionary_dir() -> Path:
    """Where the ``quickfix`` package installed its data dictionaries (``<prefix>/share/quickfix``)."""
    candidates = [Path(sys.prefix) / "share" / "quickfix"]
    spec = importlib.util.find_spec("quickfix")
    if spec is not None and spec.origin:
        # site-packages/quickfix.py -> <prefix>/lib/pythonX.Y/site-packages -> <prefix>/share/quickfix
        candidates.append(Path(spec.origin).resolve().parents[3] / "share" / "quickfix")
    for candidate in candidates:
        if (candidate / "FIX44.xml").is_file():
            return candidate
    raise ConfigError(
        "the FIX data dictionaries are missing (looked in " + ", ".join(map(str, candidates)) + "): install the "
        "quickfix package, or set EXODUS_FIX__DATA_DICTIONARY"
    )


def session_key(begin_string: str, sender_comp_id: str, target_comp_id: str) -> str:
    """The session's name as QuickFIX prints it, also the key of the adapter's Postgres records."""
    return f"{begin_string}:{sender_comp_id}->{target_comp_id}"


def store_dir_for(settings: Settings) -> Path:
    """The directory of the adapter's QuickFIX store and logs."""
    return (settings.fix.store_dir or settings.data_dir / "fix").resolve()


@dataclass
class SessionConfig:
    """Everything QuickFIX needs to run one session, on either side."""

    connection_type: str  # "initiator" or "acceptor"
    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    port: int
    directory: Path
    host: str = "127.0.0.1"
    heartbeat_seconds: int = 30
    reconnect_interval_seconds: int = 5
    logon_timeout_seconds: int = 10
    default_appl_ver_id: str = "FIX.5.0SP2"
    use_data_dictionary: bool = True
    data_dictionary: Path | None = None
    start_time: time | None = None
    end_time: time | None = None
    reset_on_logon: bool = False
    #: Validate application messages against a relaxed copy of the dictionary (structure only; see
    #: ``brokers.fix.dictionary``) and with QuickFIX's lenient settings, instead of the dictionary as it is.
    relaxed_validation: bool = False
    #: Keep sent messages in the store for resends. The adapter never resends (it gap-fills), so it keeps none:
    #: nothing it sent (its Logon with the password included) is written to disk.
    persist_messages: bool = True
    #: Acceptor only: peers allowed to connect (QuickFIX cannot bind to one address; see README).
    allowed_remote_addresses: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``BEGIN:SENDER->TARGET``."""
        return session_key(self.begin_string, self.sender_comp_id, self.target_comp_id)

    @property
    def store_path(self) -> Path:
        """QuickFIX FileStorePath."""
        return self.directory / "store"

    @property
    def log_path(self) -> Path:
        """QuickFIX FileLogPath."""
        return self.directory / "log"

    @property
    def file_stem(self) -> str:
        """The stem QuickFIX gives the session's store files (``FIX.4.4-EXODUS-EXVENUE``)."""
        return f"{self.begin_string}-{self.sender_comp_id}-{self.target_comp_id}"

    @property
    def dictionary_path(self) -> Path:
        """Where the relaxed dictionaries are written."""
        return self.directory / "dictionaries"

    def _dictionary(self, source: Path) -> Path:
        if not self.relaxed_validation:
            return source
        return self.dictionary_path / f"{source.stem}.relaxed.xml"

    def write_dictionaries(self) -> None:
        """Write the relaxed dictionaries ``render()`` names (nothing to do with strict validation)."""
        if not (self.relaxed_validation and self.use_data_dictionary):
            return
        dd_dir = data_dictionary_dir()
        if self.begin_string == "FIXT.1.1":
            source = self.data_dictionary or dd_dir / _APP_DICTIONARIES.get(self.default_appl_ver_id, "FIX50SP2.xml")
        else:
            source = self.data_dictionary or dd_dir / _DICTIONARIES[self.begin_string]
        relax_dictionary(source, self._dictionary(source))

    def render(self) -> str:
        """The QuickFIX ``.cfg`` text."""
        if self.begin_string not in _DICTIONARIES:
            raise ConfigError(f"unsupported BeginString {self.begin_string!r}; use one of {', '.join(_DICTIONARIES)}")
        default: dict[str, str] = {
            "ConnectionType": self.connection_type,
            "FileStorePath": str(self.store_path),
            "FileLogPath": str(self.log_path),
            "LogonTimeout": str(self.logon_timeout_seconds),
            "SocketNodelay": "Y",
            "PersistMessages": "Y" if self.persist_messages else "N",
        }
        if self.start_time is None or self.end_time is None:
            default.update(StartTime="00:00:00", EndTime="00:00:00", NonStopSession="Y")
        else:
            default.update(StartTime=self.start_time.strftime("%H:%M:%S"), EndTime=self.end_time.strftime("%H:%M:%S"))
        if self.connection_type == "initiator":
            default.update(
                SocketConnectHost=self.host,
                SocketConnectPort=str(self.port),
                HeartBtInt=str(self.heartbeat_seconds),
                ReconnectInterval=str(self.reconnect_interval_seconds),
                # Counterparties add their own tags (>= 5000); accept them rather than reject the report.
                ValidateUserDefinedFields="N",
            )
        else:
            default.update(SocketAcceptPort=str(self.port), SocketReuseAddress="Y")
            if self.allowed_remote_addresses:
                default["AllowedRemoteAddresses"] = ",".join(self.allowed_remote_addresses)
        if self.relaxed_validation:
            # Tags of other versions (20 on a 4.4 report), fields in another order, empty fields, tags of the
            # counterparty's own: accepted and judged by the adapter, never refused at the session level.
            default.update(
                ValidateFieldsOutOfOrder="N",
                ValidateFieldsHaveValues="N",
                ValidateUserDefinedFields="N",
                AllowUnknownMsgFields="Y",
            )
        if self.reset_on_logon:
            default["ResetOnLogon"] = "Y"
        session: dict[str, str] = {
            "BeginString": self.begin_string,
            "SenderCompID": self.sender_comp_id,
            "TargetCompID": self.target_comp_id,
        }
        if self.use_data_dictionary:
            default["UseDataDictionary"] = "Y"
            dd_dir = data_dictionary_dir()
            if self.begin_string == "FIXT.1.1":
                if self.default_appl_ver_id not in _APP_DICTIONARIES:
                    raise ConfigError(f"unsupported DefaultApplVerID {self.default_appl_ver_id!r}")
                session["TransportDataDictionary"] = str(dd_dir / "FIXT11.xml")
                app_dictionary = self.data_dictionary or dd_dir / _APP_DICTIONARIES[self.default_appl_ver_id]
                session["AppDataDictionary"] = str(self._dictionary(app_dictionary))
            else:
                dictionary = self.data_dictionary or dd_dir / _DICTIONARIES[self.begin_string]
                session["DataDictionary"] = str(self._dictionary(dictionary))
        else:
            default["UseDataDictionary"] = "N"
        if self.begin_string == "FIXT.1.1":
            session["DefaultApplVerID"] = self.default_appl_ver_id
        default.update(self.extra)
        lines = ["# Written by Exodus from its settings; edits are overwritten at the next start.", "[DEFAULT]"]
        lines += [f"{k}={v}" for k, v in default.items()]
        lines += ["", "[SESSION]"]
        lines += [f"{k}={v}" for k, v in session.items()]
        return "\n".join(lines) + "\n"


def session_config_for(settings: Settings) -> SessionConfig:
    """The adapter's (initiator's) session configuration from the ``fix`` settings section."""
    fx: FixSettings = settings.fix
    return SessionConfig(
        connection_type="initiator",
        begin_string=fx.begin_string,
        sender_comp_id=fx.sender_comp_id,
        target_comp_id=fx.target_comp_id,
        host=fx.host,
        port=fx.port,
        directory=store_dir_for(settings),
        heartbeat_seconds=fx.heartbeat_seconds,
        reconnect_interval_seconds=fx.reconnect_interval_seconds,
        logon_timeout_seconds=fx.logon_timeout_seconds,
        default_appl_ver_id=fx.default_appl_ver_id,
        use_data_dictionary=fx.use_data_dictionary,
        data_dictionary=fx.data_dictionary,
        start_time=fx.start_time,
        end_time=fx.end_time,
        reset_on_logon=fx.reset_on_logon,
        relaxed_validation=fx.validation == "relaxed",
        persist_messages=False,
    )
