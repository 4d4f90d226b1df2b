extends "scenario.gd"
## Lines with a [code]priority[/code]: an ambient bark and a high-priority line (long: its
## [code]say[/code] is a long frame) to two NPCs at once, each on its own player, both heard to
## the end. An unknown priority is refused here, before anything is sent: the [code]say[/code]
## ends with "invalid_priority" and interrupts nobody, [code]start_listening[/code] returns
## false.

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
## The player's line to the blacksmith: over 255 bytes of JSON, a long ZMTP frame.
const LONG_LINE: String = (
	"Good morning, master smith! I have walked for three days from the northern villages "
	+ "with this old sword, and its edge is chipped. Could you look at it and tell me whether "
	+ "it can still be saved, and what it would cost me?"
)
#endregion


#region Public Functions
func run() -> void:
	for npc_id: String in ["innkeeper", "blacksmith"]:
		var player: AudioStreamPlayer = VoicePlayer.new()
		player.set(&"npc_id", npc_id)
		add_child(player)
	var listening: bool = NpcVoice.start_listening("blacksmith", "open_mic", {"priority": "loud"})
	report("listen_refused", {"returned": listening, "listening": NpcVoice.is_listening()})
	var ambient: int = NpcVoice.say(
		"innkeeper",
		"Nice weather today.",
		{"priority": "ambient", "prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	)
	var high: int = NpcVoice.say(
		"blacksmith", LONG_LINE, {"priority": "high", "prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	)
	var invalid: int = NpcVoice.say("blacksmith", "Hello?", {"priority": "urgent"})
	report("case", {"name": "ambient", "turn_id": ambient})
	report("case", {"name": "high", "turn_id": high})
	report("case", {"name": "invalid", "turn_id": invalid})
	for turn_id: int in [invalid, ambient, high]:
		await wait_for_event("speech_finished", turn_id)
#endregion
