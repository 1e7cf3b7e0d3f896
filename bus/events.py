"""The bus events as types: one msgspec Struct per event's `data`, and one per bus message.

These types are the one description of the bus events in code. The broker's
validation decodes with them (bus/validate.py) and the OpenAPI/Swagger schema
(`eventsink-agent schema`) is generated from them, so the schema and the
validation cannot disagree.

The rules of the event catalogue:
- a required ("req") field has no default; every other field is optional
  (default `UNSET`, omitted when encoding) but must have its type when present;
  `None` is allowed only where the catalogue allows `null`;
- unknown extra fields are accepted (never forbidden); the broker forwards the
  original bytes anyway, so nothing is lost or reordered.

Exports `EVENT_DATA_TYPES` (event name -> data type) and `EVENT_MESSAGE_TYPES`
(event name -> the whole `{"event", "time", "data"}` message type).
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = [
    "UNSET",
    "UnsetType",
    "MediaStream",
    "PacketLossSample",
    "QualitySample",
    "ConferenceData",
    "ConferenceStartedData",
    "ConferenceUpdatedData",
    "ConferenceEndedData",
    "ParticipantData",
    "ParticipantConnectedData",
    "ParticipantUpdatedData",
    "ParticipantDisconnectedData",
    "ParticipantMediaStreamWindowData",
    "ParticipantMediaStreamsDestroyedData",
    "EVENT_DATA_TYPES",
    "EVENT_MESSAGE_TYPES",
    "CONFERENCE_EVENTS",
    "PARTICIPANT_EVENTS",
    "VERSION_2_ONLY_EVENTS",
    "required_data_field",
]


def _opt(tp: Any, description: str) -> Any:
    """An optional field of type TP (absent = UNSET), documented."""
    return Annotated[tp | UnsetType, Meta(description=description)]


def _req(tp: Any, description: str) -> Any:
    return Annotated[tp, Meta(description=description)]


class _Data(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every data type: keyword fields, unknown fields accepted."""


# ------------------------------------------------------------ nested objects


class MediaStream(_Data):
    """End-of-call statistics of one media stream of a participant leg."""

    stream_id: _opt(str, "Identifier of the stream within the call.") = UNSET
    stream_type: _opt(str, "Kind of stream: audio, video or presentation.") = UNSET
    node: _opt(str, "Address of the Conferencing Node that handled the stream.") = UNSET
    start_time: _opt(float, "Unix time the stream started.") = UNSET
    end_time: _opt(float, "Unix time the stream ended.") = UNSET
    rx_codec: _opt(str, "Codec received from the participant.") = UNSET
    tx_codec: _opt(str, "Codec sent to the participant.") = UNSET
    rx_resolution: _opt(str, "Received video resolution, like 1280x720, or empty.") = UNSET
    tx_resolution: _opt(str, "Sent video resolution, like 1280x720, or empty.") = UNSET
    rx_bitrate: _opt(int, "Received bit rate, kbps.") = UNSET
    tx_bitrate: _opt(int, "Sent bit rate, kbps.") = UNSET
    rx_packets_received: _opt(int, "Packets received from the participant.") = UNSET
    rx_packets_lost: _opt(int, "Packets from the participant that were lost.") = UNSET
    tx_packets_sent: _opt(int, "Packets sent to the participant.") = UNSET
    tx_packets_lost: _opt(int, "Packets to the participant that were lost.") = UNSET
    rx_fps: _opt(float, "Received video frames per second.") = UNSET
    tx_fps: _opt(float, "Sent video frames per second.") = UNSET
    rx_packet_loss: _opt(float, "Receive packet loss, percent.") = UNSET
    tx_packet_loss: _opt(float, "Transmit packet loss, percent.") = UNSET


class PacketLossSample(_Data):
    """Packet counters of one stream over one sampling window."""

    stream_id: _opt(str, "Identifier of the stream within the call.") = UNSET
    stream_type: _opt(str, "Kind of stream: audio, video or presentation.") = UNSET
    time: _opt(float, "Unix time of the sample.") = UNSET
    time_delta: _opt(float, "Length of the sampling window, seconds.") = UNSET
    tx_packets_sent: _opt(int, "Packets sent in the window.") = UNSET
    tx_packets_lost: _opt(int, "Sent packets lost in the window.") = UNSET
    rx_packets_received: _opt(int, "Packets received in the window.") = UNSET
    rx_packets_lost: _opt(int, "Received packets lost in the window.") = UNSET


_QUALITY = "0 unknown, 1 good, 2 ok, 3 bad, 4 terrible; null when not in use."


class QualitySample(_Data):
    """Perceived quality over one sampling window."""

    time: _opt(float, "Unix time of the sample.") = UNSET
    time_delta: _opt(float, "Length of the sampling window, seconds.") = UNSET
    quality: _opt(int | None, "Overall call quality: " + _QUALITY) = UNSET
    audio: _opt(int | None, "Audio quality: " + _QUALITY) = UNSET
    video: _opt(int | None, "Video quality: " + _QUALITY) = UNSET
    presentation: _opt(int | None, "Presentation quality: " + _QUALITY) = UNSET
    applicationsharing: _opt(int | None, "Application sharing quality: " + _QUALITY) = UNSET


# ------------------------------------------------------------ conference events


class ConferenceData(_Data):
    """Fields common to conference_started, conference_updated and conference_ended."""

    name: _req(str, "Conference name; the key that correlates a conference across nodes.")
    service_type: _opt(str, "conference, lecture, two_stage_dialing, media_playback, test_call or gateway.") = UNSET
    is_locked: _opt(bool, "Whether the conference is locked.") = UNSET
    guests_muted: _opt(bool, "Whether all guests are muted.") = UNSET
    is_started: _opt(bool, "Whether a Host with media has joined.") = UNSET
    start_time: _opt(float, "Unix time the conference started on this node.") = UNSET
    tag: _opt(str, "Service tag; may be empty.") = UNSET


class ConferenceStartedData(ConferenceData):
    """data of conference_started: a node began hosting a conference."""


class ConferenceUpdatedData(ConferenceData):
    """data of conference_updated: a conference's state changed on this node."""


class ConferenceEndedData(ConferenceData):
    """data of conference_ended: a node stopped hosting a conference."""

    end_time: _opt(float, "Unix time the conference ended on this node.") = UNSET


# ------------------------------------------------------------ participant events


class ParticipantData(_Data):
    """Fields common to participant_connected, participant_updated and participant_disconnected."""

    uuid: _req(str, "Identifier of this participant leg.")
    conference: _opt(str, "Conference name.") = UNSET
    call_id: _opt(str, "Correlates the messages of one call leg.") = UNSET
    conversation_id: _opt(str, "Correlates the calls (audio/video, presentation, chat) of one person.") = UNSET
    related_uuids: _opt(list[str], "Identifiers of sibling legs.") = UNSET
    call_direction: _opt(str, "in or out.") = UNSET
    protocol: _opt(str, "WebRTC, SIP, H323, TEAMS, MSSIP, GHM, RTMP or API.") = UNSET
    role: _opt(str, "chair, guest or unknown.") = UNSET
    service_type: _opt(str, "As for conferences, plus connecting, ivr and waiting_room.") = UNSET
    display_name: _opt(str, "Display name of the participant.") = UNSET
    source_alias: _opt(str, "Alias the call came from.") = UNSET
    destination_alias: _opt(str, "Alias the call was placed to.") = UNSET
    remote_address: _opt(str, "Address of the participant's endpoint.") = UNSET
    vendor: _opt(str, "Endpoint vendor and version string.") = UNSET
    media_node: _opt(str, "Address of the node handling media.") = UNSET
    signalling_node: _opt(str, "Address of the node handling signalling.") = UNSET
    proxy_node: _opt(str, "Address of the proxying node, if any.") = UNSET
    system_location: _opt(str, "System location of the node.") = UNSET
    call_tag: _opt(str, "Call tag; may be empty.") = UNSET
    service_tag: _opt(str, "Service tag; may be empty.") = UNSET
    encryption: _opt(str, "On or Off.") = UNSET
    connect_time: _opt(float | None, "Unix time the participant connected, or null.") = UNSET
    rx_bandwidth: _opt(int, "Receive bandwidth, kbps.") = UNSET
    tx_bandwidth: _opt(int, "Transmit bandwidth, kbps.") = UNSET
    has_media: _opt(bool, "Whether the leg carries media.") = UNSET
    is_muted: _opt(bool, "Whether the participant is muted by the conference.") = UNSET
    is_client_muted: _opt(bool, "Whether the participant muted themselves.") = UNSET
    is_presenting: _opt(bool, "Whether the participant is presenting.") = UNSET
    is_streaming: _opt(bool, "Whether the participant is a streaming or recording endpoint.") = UNSET
    is_idp_authenticated: _opt(bool, "Whether the participant signed in through an identity provider.") = UNSET


class ParticipantConnectedData(ParticipantData):
    """data of participant_connected: a participant leg joined."""


class ParticipantUpdatedData(ParticipantData):
    """data of participant_updated: a participant leg's state changed."""


class ParticipantDisconnectedData(ParticipantData):
    """data of participant_disconnected: a participant leg left."""

    disconnect_reason: _opt(str, "Why the leg ended, e.g. 'Call disconnected'.") = UNSET
    duration: _opt(float, "Length of the call leg, seconds.") = UNSET
    end_time: _opt(float, "Unix time the leg ended.") = UNSET
    media_streams: _opt(
        list[MediaStream], "Version 1 sinks only: the leg's end-of-call media statistics, merged in by the agent."
    ) = UNSET


# ------------------------------------------------------------ media events (version 2 only)


_BUCKETS = "0_unknown, 1_good, 2_ok, 3_bad or 4_terrible."


class ParticipantMediaStreamWindowData(_Data):
    """data of participant_media_stream_window: perceived call quality moved between buckets."""

    uuid: _req(str, "Identifier of the participant leg.")
    call_quality_was: _opt(str, "Previous quality bucket: " + _BUCKETS) = UNSET
    call_quality_now: _opt(str, "Current quality bucket: " + _BUCKETS) = UNSET
    packet_loss_history: _opt(list[PacketLossSample], "Packet counters per stream and window.") = UNSET
    recent_quality: _opt(list[QualitySample], "Recent quality samples.") = UNSET


class ParticipantMediaStreamsDestroyedData(_Data):
    """data of participant_media_streams_destroyed: end-of-call media statistics of one leg."""

    uuid: _req(str, "Identifier of the participant leg; matches its participant_disconnected.")
    media_streams: _opt(list[MediaStream], "End-of-call statistics of each media stream.") = UNSET


# ------------------------------------------------------------ registry

EVENT_DATA_TYPES: dict[str, type] = {
    "conference_started": ConferenceStartedData,
    "conference_updated": ConferenceUpdatedData,
    "conference_ended": ConferenceEndedData,
    "participant_connected": ParticipantConnectedData,
    "participant_updated": ParticipantUpdatedData,
    "participant_disconnected": ParticipantDisconnectedData,
    "participant_media_stream_window": ParticipantMediaStreamWindowData,
    "participant_media_streams_destroyed": ParticipantMediaStreamsDestroyedData,
}
CONFERENCE_EVENTS = ("conference_started", "conference_updated", "conference_ended")
PARTICIPANT_EVENTS = ("participant_connected", "participant_updated", "participant_disconnected")
VERSION_2_ONLY_EVENTS = ("participant_media_stream_window", "participant_media_streams_destroyed")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _message_type(event: str, data_type: type) -> type:
    """The bus message of EVENT: {"event": EVENT, "time": float, "data": DATA}."""
    return msgspec.defstruct(
        _camel(event) + "Message",
        [
            # msgspec takes plain strings in a Literal, not StrEnum members
            (
                "event",
                Annotated[Literal[str(event)], Meta(description="The event name; equals the ZeroMQ topic frame.")],
            ),  # type: ignore[valid-type]
            ("time", Annotated[float, Meta(description="Unix time of the event, as the conference process saw it.")]),
            ("data", Annotated[data_type, Meta(description="The event's fields.")]),
        ],
        kw_only=True,
        module=__name__,
    )


EVENT_MESSAGE_TYPES: dict[str, type] = {event: _message_type(event, tp) for event, tp in EVENT_DATA_TYPES.items()}
for _tp in EVENT_MESSAGE_TYPES.values():
    globals()[_tp.__name__] = _tp
del _tp


def required_data_field(event: str) -> str:
    """The one field EVENT's data must carry: `name` for conference events, `uuid` for the others."""
    return "name" if event in CONFERENCE_EVENTS else "uuid"
