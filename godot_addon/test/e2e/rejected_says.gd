extends "scenario.gd"
## Every kind of refused [code]say[/code] ends with exactly one [signal speech_finished]
## "error" and one error naming its turn: refused here (npc_id length, text over
## [code]max_text_chars[/code], a frame over [code]max_message_bytes[/code]) or by the daemon
## (unknown NPC or profile, empty text; with fault injection, an oversized frame and a reused
## turn id, which the daemon names by [code]rejected_turn_id[/code]). A cancel crossing a
## refusal is not reported. A last line to the NPC must then start and cancel cleanly.

#region Constants
## How long a refusal may take: one round trip to the daemon, or one frame.
const REFUSAL_TIMEOUT_S: float = 20.0
## Over the daemon's 64 KiB frame limit, under its 20000-character test limit.
const HUGE_TEXT_CHARS: int = 17000
#endregion


#region Public Functions
func run() -> void:
	var limits: Dictionary = NpcVoice.get_welcome()["limits"]
	report("limits", limits)
	var max_chars: int = int(limits["max_text_chars"])
	var huge: String = "🗡".repeat(HUGE_TEXT_CHARS)  # 4 UTF-8 bytes each
	await _refused("empty_npc_id", "", "Hello there.")
	await _refused("long_npc_id", "n".repeat(65), "Hello there.")
	await _refused("unknown_npc", "ghost", "Hello there.")
	await _refused("unknown_profile", "blacksmith", "Hello there.", {"profile": "whisper"})
	await _refused("empty_text", "blacksmith", "   ")
	await _refused("text_too_long", "blacksmith", "a".repeat(max_chars + 1))
	await _refused("frame_too_large", "blacksmith", huge)
	# Fault injection, white box: a daemon that states no limits, so the oversized frame goes
	# out and the daemon refuses it before it is a turn (bad_frame, rejected_turn_id).
	var welcome: Dictionary = NpcVoice._welcome
	welcome.erase("limits")
	await _refused("frame_too_large_at_daemon", "blacksmith", huge)
	welcome["limits"] = limits
	# ... and a turn id the daemon has seen already (turn_id_reused, rejected_turn_id).
	var turns: RefCounted = NpcVoice._turns
	var next_id: int = turns.get(&"next_turn_id")
	turns.set(&"next_turn_id", 1)
	await _refused("turn_id_reused", "blacksmith", "Hello again.")
	turns.set(&"next_turn_id", next_id)
	# A cancel that crosses the daemon's refusal: the daemon answers it with unknown_turn.
	var crossed: int = NpcVoice.say("ghost", "Are you there?")
	NpcVoice.cancel(crossed)
	report("case", {"name": "cancel_crossing_error", "turn_id": crossed})
	await wait_for_event("speech_finished", crossed)
	# The last line: any turn left unfinished above would be cancelled now (unknown_turn).
	var last: int = NpcVoice.say("blacksmith", "Good day to you.")
	report("case", {"name": "last_line", "turn_id": last})
	await wait_until(func() -> bool: return played_ms(last) > 0.0, "audio of the last line")
	NpcVoice.cancel(last)
	await wait_for_event("speech_finished", last)


#endregion


#region Private Functions
func _refused(case: String, npc_id: String, text: String, options: Dictionary = {}) -> void:
	var since: int = events.size()  # a reused turn id has older events
	var turn_id: int = NpcVoice.say(npc_id, text, options)
	report("case", {"name": case, "turn_id": turn_id})
	var ended: Callable = func() -> bool:
		for item: Dictionary in events.slice(since):
			if item["event"] == "speech_finished" and item["turn_id"] == turn_id:
				return true
		return false
	await wait_until(ended, "the end of refused say " + case, REFUSAL_TIMEOUT_S)

#endregion
