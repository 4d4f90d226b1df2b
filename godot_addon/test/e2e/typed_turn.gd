extends "scenario.gd"
## A typed line heard to the end on the built-in player (subtitles as their chunks play, all
## the audio consumed by the mixer, no underrun with a pre-buffer holding the whole reply),
## then barge-in: a second line to a talking NPC.

#region Private Variables
var _chunk_starts_ms: Dictionary = {}
var _received_samples: Dictionary = {}
#endregion


#region Public Functions
func run() -> void:
	var connection: RefCounted = NpcVoice._connection  # white box: the block headers
	connection.connect(&"message_received", _on_message_received)
	var whole: Dictionary = {"prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	var heard: Dictionary = await say_and_wait("blacksmith", "Can you repair my sword?", whole)
	var turn_id: int = heard["turn_id"]
	report("chunk_starts", {"turn_id": turn_id, "starts_ms": _chunk_starts_ms.get(turn_id, {})})
	var first: int = NpcVoice.say("innkeeper", "Tell me about the old castle.")
	await wait_for_event("speech_started", first)
	var second: int = NpcVoice.say("innkeeper", "Never mind, a room for the night.", whole)
	await wait_for_event("speech_finished", first)
	await wait_for_event("speech_finished", second)
	report("barge_in", {"first": first, "second": second})


#endregion


#region Signal Handlers
func _on_message_received(frames: Array[PackedByteArray]) -> void:
	var header: Variant = JSON.parse_string(frames[0].get_string_from_utf8())
	if not header is Dictionary or header.get("type") != "audio_block":
		return
	var turn_id: int = int(header["turn_id"])
	var chunk: String = str(int(header["chunk_index"]))
	var received: int = _received_samples.get(turn_id, 0)
	var starts: Dictionary = _chunk_starts_ms.get_or_add(turn_id, {})
	if not starts.has(chunk):
		starts[chunk] = received * 1000.0 / float(header["sample_rate_hz"])
	_received_samples[turn_id] = received + int(header["sample_count"])
#endregion
