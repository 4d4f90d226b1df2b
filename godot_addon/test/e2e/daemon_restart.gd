extends "scenario.gd"
## The daemon dies mid-turn and comes back: the test freezes it once the first block of a
## reply arrived (the file "frozen" in [code]--control[/code] says so), a second line goes to
## the frozen daemon (surely in flight), then the test kills it and starts a new daemon on the
## same port. Every turn still in flight must end "disconnected", the addon must reconnect by
## itself, and the next line must be heard to the end.

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
## Reconnecting includes a daemon start-up (model loading).
const RECONNECT_TIMEOUT_S: float = 180.0
#endregion


#region Public Functions
func run() -> void:
	for npc_id: String in ["innkeeper", "oracle"]:  # one player each: no turn stops another
		var player: Node = VoicePlayer.new()
		player.set(&"npc_id", npc_id)
		add_child(player)
	var first: int = NpcVoice.say("innkeeper", "Tell me about the old castle.")
	await wait_until(func() -> bool: return _ttfa_ms(first) >= 0.0, "the first block")
	report("streaming", {"turn_id": first})
	var frozen: Callable = func() -> bool: return FileAccess.file_exists(control_file("frozen"))
	await wait_until(frozen, "the daemon frozen")
	var second: int = NpcVoice.say("oracle", "Are you still there?")
	var in_flight: Array[int] = []
	for turn_id: int in [first, second]:
		if events_of("speech_finished", turn_id).is_empty():
			in_flight.append(turn_id)
	report("in_flight", {"turn_ids": in_flight})
	await wait_for_event("disconnected")
	var welcomed: Callable = func() -> bool: return events_of("connected").size() >= 2
	await wait_until(welcomed, "a handshake with the new daemon", RECONNECT_TIMEOUT_S)
	var whole: Dictionary = {"prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	var last: Dictionary = await say_and_wait("blacksmith", "Can you repair my sword?", whole)
	report("case", {"name": "after_restart", "turn_id": last["turn_id"]})


#endregion


#region Private Functions
func _ttfa_ms(turn_id: int) -> float:
	var timings: Dictionary = NpcVoice.get_turn_timings(turn_id)
	return timings.get("client_ttfa_ms", -1.0)
#endregion
