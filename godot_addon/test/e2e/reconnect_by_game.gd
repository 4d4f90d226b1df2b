extends "scenario.gd"
## [code]connect_to_daemon()[/code] on a live connection, with a turn in flight (said in the
## same frame: the daemon cannot have ended it) and the microphone streaming: the turn ends
## "disconnected", [signal disconnected] fires once, the microphone stops, and after the new
## handshake a line plays again, with no error on the way.

#region Constants
## Microphone blocks to have sent before reconnecting.
const MIC_BLOCKS: int = 3
#endregion


#region Public Functions
func run() -> void:
	NpcVoice.start_listening("blacksmith", "open_mic")
	var voice_input: Node = NpcVoice.get_node(^"VoiceInput")
	var microphone: AudioStreamPlayer = voice_input.get_node(^"MicCapture/Microphone")
	await wait_until(func() -> bool: return voice_input.get(&"_seq") >= MIC_BLOCKS, "mic blocks")
	var turn_id: int = NpcVoice.say("innkeeper", "Tell me about the old castle.")
	NpcVoice.connect_to_daemon()
	report(
		"reconnecting",
		{
			"turn_id": turn_id,
			"listening": NpcVoice.is_listening(),
			"microphone_open": microphone.playing,
		}
	)
	var welcomed: Callable = func() -> bool: return events_of("connected").size() >= 2
	await wait_until(welcomed, "the second handshake")
	var last: int = NpcVoice.say("blacksmith", "Are you still there?")
	report("case", {"name": "after_reconnect", "turn_id": last})
	await wait_until(func() -> bool: return played_ms(last) > 0.0, "audible after reconnect")
	NpcVoice.cancel(last)
	await wait_for_event("speech_finished", last)

#endregion
