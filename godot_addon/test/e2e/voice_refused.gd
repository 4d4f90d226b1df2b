extends "scenario.gd"
## The daemon refuses the microphone stream ([code]--npc=ghost[/code]: unknown NPC; or a daemon
## without voice input): the addon stops listening at once and reports one error, although
## blocks were already on their way (injected here, white box, so that they surely were): the
## daemon's answers to those are dropped. A typed line afterwards is the sync point: every
## answer to the earlier blocks arrives before its audio.

#region Constants
## Blocks sent before the refusal can arrive.
const BLOCKS_IN_FLIGHT: int = 3
#endregion


#region Public Functions
func run() -> void:
	var npc_id: String = str(args.get("npc", "ghost"))
	NpcVoice.start_listening(npc_id, "push_to_talk")
	var voice_input: Node = NpcVoice.get_node(^"VoiceInput")
	var silence := PackedByteArray()
	silence.resize(3200)  # 100 ms at 16 kHz
	for i: int in BLOCKS_IN_FLIGHT:
		voice_input.call(&"_on_block_captured", silence)
	var refused: Dictionary = await wait_for_event("error_received")
	var microphone: AudioStreamPlayer = NpcVoice.get_node(^"VoiceInput/MicCapture/Microphone")
	report(
		"refused",
		{
			"code": refused["code"],
			"listening": NpcVoice.is_listening(),
			"microphone_open": microphone.playing
		}
	)
	var last: int = NpcVoice.say("blacksmith", "Can you hear me?")
	await wait_until(func() -> bool: return played_ms(last) > 0.0, "the typed line audible")
	NpcVoice.cancel(last)
	await wait_for_event("speech_finished", last)
	report("after", {"listening": NpcVoice.is_listening()})
#endregion
