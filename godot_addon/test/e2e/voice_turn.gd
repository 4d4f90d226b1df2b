extends "scenario.gd"
## Voice input through the real capture path: a WAV of a spoken line ([code]--wav[/code], made
## by the daemon's own Piper voice) plays into the microphone bus, where the addon's
## [AudioEffectCapture] takes it, as it would a microphone (headless Godot has none). The
## blacksmith is talking (paused by the game, so that it still talks whatever the machine's
## speed) when the player speaks: barge-in stops it. Push-to-talk: the release sends the
## utterance, the daemon transcribes it and the reply plays to the end. A second press must
## find the microphone still open, not reopened.

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
#endregion


#region Public Functions
## An [AudioStreamWAV] from a 16-bit PCM .wav file (RIFF chunks "fmt " and "data").
static func load_wav(path: String) -> AudioStreamWAV:
	var data: PackedByteArray = FileAccess.get_file_as_bytes(path)
	var stream := AudioStreamWAV.new()
	stream.format = AudioStreamWAV.FORMAT_16_BITS
	var pos: int = 12
	while pos + 8 <= data.size():
		var id: String = data.slice(pos, pos + 4).get_string_from_ascii()
		var size: int = data.decode_u32(pos + 4)
		if id == "fmt ":
			stream.stereo = data.decode_u16(pos + 10) == 2
			stream.mix_rate = data.decode_u32(pos + 12)
		elif id == "data":
			stream.data = data.slice(pos + 8, pos + 8 + size)
		pos += 8 + size + (size & 1)
	return stream


func run() -> void:
	var narrator: AudioStreamPlayer = VoicePlayer.new()
	narrator.set(&"npc_id", "blacksmith")
	add_child(narrator)
	var talking: int = narrator.call(&"say", "Can you repair my sword?")
	await wait_until(func() -> bool: return played_ms(talking) > 0.0, "the blacksmith talking")
	narrator.stream_paused = true  # it talks until the player barges in
	report("case", {"name": "talking", "turn_id": talking})
	NpcVoice.start_listening(
		"blacksmith", "push_to_talk", {"prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	)
	await _speak(load_wav(str(args["wav"])))
	NpcVoice.stop_listening()  # the key is released: the utterance ends here
	var microphone: AudioStreamPlayer = NpcVoice.get_node(^"VoiceInput/MicCapture/Microphone")
	report("released", {"microphone_open": microphone.playing})
	var transcript: Dictionary = await wait_for_event("transcript_received")
	await wait_for_event("speech_finished", transcript["turn_id"])
	var playback: AudioStreamPlayback = microphone.get_stream_playback()
	NpcVoice.start_listening("blacksmith", "push_to_talk")
	report(
		"second_press",
		{"same_input": microphone.get_stream_playback() == playback, "open": microphone.playing}
	)
	NpcVoice.stop_listening(true)
	report("closed", {"microphone_open": microphone.playing})


#endregion


#region Private Functions
## Plays [param line] into the microphone bus until it has been mixed whole.
func _speak(line: AudioStreamWAV) -> void:
	var speaker := AudioStreamPlayer.new()
	speaker.bus = str(ProjectSettings.get_setting("npc_voice/voice/mic_bus", "NpcVoiceMic"))
	speaker.stream = line
	add_child(speaker)
	var done: Array[bool] = [false]
	speaker.finished.connect(func() -> void: done[0] = true)
	speaker.play()
	report("speaking", {"bus": speaker.bus, "seconds": line.get_length()})
	await wait_until(func() -> bool: return done[0], "the spoken line played into the mic bus")
	speaker.queue_free()
#endregion
