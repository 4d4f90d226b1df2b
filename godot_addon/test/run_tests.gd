extends SceneTree
## Headless unit tests of the addon's codec, PCM conversions, playback queue and turn table;
## needs a Godot 4.3+ binary: [code]godot --headless --path godot_addon -s
## res://test/run_tests.gd[/code] (tests/test_godot_unit.py runs it). Exit code = failures.
## The playback checks run once the tree is up (a player plays only inside it), against the
## real mixer (headless, Godot's Dummy audio driver mixes in real time).

#region Constants
const Codec := preload("res://addons/npc_voice/zmtp_codec.gd")
const VoiceOutput := preload("res://addons/npc_voice/voice_output.gd")
const TurnState := preload("res://addons/npc_voice/turn_state.gd")
const MicResampler := preload("res://addons/npc_voice/mic_resampler.gd")
const MicCapture := preload("res://addons/npc_voice/mic_capture.gd")
const TurnTable := preload("res://addons/npc_voice/turn_table.gd")
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
## Frames to wait at most for the mixer (real time: about 10 s at 60 fps).
const MAX_WAIT_FRAMES: int = 600
const DEALER_READY_HEX: String = (
	"041c055245414459" + "0b536f636b65742d54797065" + "00000006" + "4445414c4552"
)
const ROUTER_READY_HEX: String = (
	"0429055245414459"
	+ "0b536f636b65742d54797065"
	+ "00000006"
	+ "524f55544552"
	+ "084964656e74697479"
	+ "00000000"
)
#endregion

#region Private Variables
var _failures: int = 0
var _checks: int = 0
#endregion


#region Engine Callbacks
func _initialize() -> void:
	_run()


#endregion


#region Private Functions
func _run() -> void:
	_test_greeting()
	_test_ready()
	_test_frames()
	_test_ping_pong()
	_test_s16le_conversion()
	_test_turn_outcome()
	_test_mic_resampler()
	_test_surround_refused()
	await process_frame  # the root is inside the tree from here on
	await _test_voice_output()
	await _test_generator_kept_alive()
	await _test_player_taken_over()
	await _test_chunk_starts_follow_playback()
	_test_cancel_crossing_a_barge_in()
	await process_frame  # the players freed above leave before quitting
	print("%d checks, %d failures" % [_checks, _failures])
	quit(_failures)


func _check(condition: bool, what: String) -> void:
	_checks += 1
	if not condition:
		_failures += 1
		printerr("FAIL: ", what)


static func _hex(text: String) -> PackedByteArray:
	var data := PackedByteArray()
	for i: int in range(0, text.length(), 2):
		data.append(text.substr(i, 2).hex_to_int())
	return data


func _test_greeting() -> void:
	var greeting: PackedByteArray = Codec.greeting()
	_check(greeting.size() == 64, "greeting is 64 bytes")
	_check(
		greeting.slice(0, 16).hex_encode() == "ff00000000000000007f03014e554c4c",
		"greeting starts with signature, version 3.1 and NULL"
	)
	_check(Codec.check_greeting(greeting) == "", "our own greeting is valid")
	_check(Codec.check_greeting("HTTP/1.1 400".to_ascii_buffer()) != "", "HTTP is rejected")
	var plain: PackedByteArray = greeting.duplicate()
	plain[12] = "P".unicode_at(0)
	_check(Codec.check_greeting(plain) != "", "mechanism PLAIN is rejected")


func _test_ready() -> void:
	_check(Codec.ready_command("DEALER").hex_encode() == DEALER_READY_HEX, "DEALER READY bytes")
	var frame: Codec.Frame = Codec.decode_frame(_hex(ROUTER_READY_HEX), 0, 1 << 20)
	_check(frame != null and frame.is_command(), "ROUTER READY decodes as a command")
	var command: Codec.Command = Codec.parse_command(frame.body)
	_check(command.name == "READY", "command name READY")
	var properties: Dictionary = Codec.parse_properties(command.data)
	var socket_type: PackedByteArray = properties.get("Socket-Type", PackedByteArray())
	_check(socket_type.get_string_from_ascii() == "ROUTER", "Socket-Type ROUTER")
	_check(properties.has("Identity"), "empty Identity present")


func _test_frames() -> void:
	var short_body: PackedByteArray = "x".repeat(255).to_ascii_buffer()
	var long_body: PackedByteArray = "y".repeat(256).to_ascii_buffer()
	var short_frame: PackedByteArray = Codec.encode_frame(short_body, true)
	var long_frame: PackedByteArray = Codec.encode_frame(long_body)
	_check(short_frame[0] == 0x01 and short_frame[1] == 255, "255 bytes: short form, MORE")
	_check(long_frame.slice(0, 9).hex_encode() == "020000000000000100", "256 bytes: long form")
	var stream: PackedByteArray = short_frame + long_frame
	_check(Codec.decode_frame(stream, 0, 1 << 20).wire_size == 257, "short frame size")
	_check(Codec.decode_frame(stream.slice(0, 100), 0, 1 << 20) == null, "incomplete frame")
	var second: Codec.Frame = Codec.decode_frame(stream, 257, 1 << 20)
	_check(second.body == long_body and not second.has_more(), "long frame body")
	_check(Codec.decode_frame(stream, 257, 100).error != "", "frame above the cap is an error")
	_check(Codec.decode_frame(PackedByteArray([0x08, 0]), 0, 10).error != "", "reserved flag")
	var huge: PackedByteArray = PackedByteArray([0x02, 0x80, 0, 0, 0, 0, 0, 0, 1])
	_check(Codec.decode_frame(huge, 0, 1 << 20).error != "", "size with the top bit set")


func _test_ping_pong() -> void:
	var ping: PackedByteArray = Codec.ping_command(100, PackedByteArray([1, 2]))
	var command: Codec.Command = Codec.parse_command(Codec.decode_frame(ping, 0, 64).body)
	_check(command.name == "PING", "PING round trip")
	var pong: PackedByteArray = Codec.pong_for_ping(command.data)
	_check(pong.hex_encode() == "0407" + "04504f4e47" + "0102", "PONG echoes the context")
	_check(Codec.pong_for_ping(PackedByteArray([0, 10])).hex_encode() == "040504504f4e47", "PONG")


func _test_s16le_conversion() -> void:
	var pcm := PackedByteArray()
	pcm.resize(6)
	pcm.encode_s16(0, -32768)
	pcm.encode_s16(2, 0)
	pcm.encode_s16(4, 16384)
	var frames: PackedVector2Array = VoiceOutput.s16le_to_frames(pcm)
	_check(frames.size() == 3, "one frame per sample")
	_check(frames[0] == Vector2(-1, -1) and frames[2] == Vector2(0.5, 0.5), "s16 scaling")
	var second := PackedByteArray()
	second.resize(2 * 22050)
	var started: int = Time.get_ticks_usec()
	VoiceOutput.s16le_to_frames(second)
	print(
		(
			"s16le -> frames: %.2f ms per second of 22050 Hz audio"
			% ((Time.get_ticks_usec() - started) / 1000.0)
		)
	)


func _test_turn_outcome() -> void:
	var turn := TurnState.new()
	turn.terminal = "done"
	_check(turn.outcome() == "done", "done heard to the end")
	turn.stopped = true
	_check(turn.outcome() == "cancelled", "done but stopped here")
	_check(turn.client_timings()["client_ttfa_ms"] == -1.0, "no block: TTFA -1")


func _new_player() -> AudioStreamPlayer:
	var player := AudioStreamPlayer.new()
	root.add_child(player)
	return player


static func _silence(samples: int) -> PackedByteArray:
	var block := PackedByteArray()
	block.resize(2 * samples)
	return block


func _test_voice_output() -> void:
	var player: AudioStreamPlayer = _new_player()
	var output := VoiceOutput.new(player)
	var started: Array[int] = []
	output.playback_started.connect(func(turn_id: int) -> void: started.append(turn_id))
	output.begin_turn(7, 100)
	var block: PackedByteArray = _silence(1102)  # "50 ms" at 22050 Hz: 49.98 ms
	output.push_block(7, block, 22050)
	output.process()
	_check(started.is_empty() and not player.playing, "50 ms queued: still pre-buffering")
	output.push_block(7, block, 22050)
	output.push_block(8, block, 22050)  # another turn's block is ignored
	output.process()
	_check(started.size() == 1 and started[0] == 7 and player.playing, "100 ms queued: playing")
	var generator: AudioStreamGenerator = player.stream as AudioStreamGenerator
	_check(generator != null and generator.mix_rate == 22050.0, "generator at the PCM rate")
	_check(generator != null and generator.buffer_length < 0.5, "small generator buffer")
	var finished: Array[float] = []
	output.playback_finished.connect(
		func(_turn: int, _underruns: int, played: float) -> void: finished.append(played)
	)
	output.end_turn(7)
	for i: int in MAX_WAIT_FRAMES:
		if not finished.is_empty():
			break
		output.process()
		await process_frame
	_check(finished.size() == 1, "a finished turn is played out")
	_check(
		not finished.is_empty() and is_equal_approx(finished[0], 2204 * 1000.0 / 22050),
		"all played"
	)
	_check(not player.playing and output.current_turn_id() == -1, "played out: player stopped")
	output.begin_turn(9, 0)
	output.push_block(9, block, 22050)
	output.process()
	output.stop_turn(9)
	_check(not player.playing and output.current_turn_id() == -1, "barge-in stops at once")
	player.queue_free()


## A replaced generator outlives the replacement: the audio thread may still mix (fade out) its
## old playback, which holds only a raw pointer to it.
func _test_generator_kept_alive() -> void:
	var player: AudioStreamPlayer = _new_player()
	var output := VoiceOutput.new(player)
	output.begin_turn(1, 100)
	output.push_block(1, _silence(2205), 22050)
	output.process()
	var first: WeakRef = weakref(player.stream)
	await process_frame
	output.begin_turn(2, 300)  # another pre-buffer: another buffer_length, a new generator
	output.push_block(2, _silence(6615), 22050)
	output.process()
	_check(player.playing and weakref(player.stream) != first, "a new generator plays")
	_check(first.get_ref() != null, "the replaced generator is still alive")
	output.stop_turn(2)
	player.queue_free()


## Game code that stops a voice player, sets playing = false or replaces its stream ends the turn.
func _test_player_taken_over() -> void:
	for how: String in ["stop", "playing", "stream"]:
		var player: AudioStreamPlayer = _new_player()
		var output := VoiceOutput.new(player)
		var aborted: Array[int] = []
		output.playback_aborted.connect(
			func(turn_id: int, _underruns: int, _played: float) -> void: aborted.append(turn_id)
		)
		output.begin_turn(3, 50)
		output.push_block(3, _silence(22050), 22050)
		output.process()
		await process_frame
		var other := AudioStreamGenerator.new()
		match how:
			"stop":
				player.stop()
			"playing":
				player.playing = false
			"stream":
				player.stream = other
				player.play()
		output.process()
		_check(aborted == [3], "%s: the turn is aborted" % how)
		_check(output.current_turn_id() == -1, "%s: the output is free again" % how)
		if how == "stream":
			_check(player.playing and player.stream == other, "the game's own stream plays on")
		player.queue_free()


## Each chunk's start is signalled once the mixer consumed its first sample.
func _test_chunk_starts_follow_playback() -> void:
	var player: AudioStreamPlayer = _new_player()
	var output := VoiceOutput.new(player)
	var starts: Dictionary = {}
	var on_start: Callable = func(_turn: int, chunk: int) -> void:
		starts[chunk] = output.played_ms()
	output.chunk_started.connect(on_start)
	output.begin_turn(4, 60)
	output.push_block(4, _silence(2205), 22050, 0)  # chunk 0: 100 ms
	output.push_block(4, _silence(2205), 22050, 1)  # chunk 1 starts at 100 ms
	output.end_turn(4)
	output.process()
	_check(starts.is_empty(), "no chunk starts before the mixer consumed a sample")
	for i: int in MAX_WAIT_FRAMES:
		if output.current_turn_id() < 0:
			break
		output.process()
		await process_frame
	_check(starts.keys() == [0, 1], "both chunks started, in order")
	_check(starts.get(0, 0.0) > 0.0, "chunk 0 started after its first sample was played")
	_check(starts.get(1, 0.0) > 100.0, "chunk 1 started after 100 ms were played")
	output.chunk_started.disconnect(on_start)  # the lambda holds the output: break the cycle
	player.queue_free()


## A cancel of ours that crosses the daemon's own barge-in `cancelled` is answered with an
## unknown_turn error that must not reach the game.
func _test_cancel_crossing_a_barge_in() -> void:
	var sent: Array[Dictionary] = []
	var errors: Array[String] = []
	var player: Node = VoicePlayer.new()
	root.add_child(player)
	var is_connected: Callable = func() -> bool: return true
	var table := TurnTable.new(
		root, player, func(m: Dictionary) -> void: sent.append(m), is_connected
	)
	table.error_received.connect(
		func(code: String, _message: String, _turn: int) -> void: errors.append(code)
	)
	table.begin_turn(5, "smith", {})
	table.cancel(5)
	table.handle_terminal({"type": "cancelled", "turn_id": 5, "reason": "barge_in"}, "cancelled")
	table.handle_error({"type": "error", "code": "unknown_turn", "turn_id": null})
	_check(sent.size() == 1 and sent[0]["type"] == "cancel", "one cancel sent")
	_check(errors.is_empty(), "the crossing cancel's unknown_turn is not reported")
	table.handle_error({"type": "error", "code": "unknown_turn", "turn_id": null})
	_check(errors == ["unknown_turn"], "a second unknown_turn is reported")
	player.queue_free()


func _test_surround_refused() -> void:
	_check(MicCapture.channel_problem(1) == "", "stereo output: voice input allowed")
	_check("91133" in MicCapture.channel_problem(3), "5.1 output: voice input refused")


func _test_mic_resampler() -> void:
	var frames := PackedVector2Array()
	for i: int in 4800:  # 100 ms of a 1 kHz sine at 48 kHz, 0.5 on the left, silent on the right
		frames.append(Vector2(sin(TAU * 1000.0 * i / 48000.0) * 0.5, 0.0))
	var whole: PackedByteArray = MicResampler.new(48000, 16000).process(frames)
	_check(whole.size() == 2 * 1600, "48 kHz -> 16 kHz: 1600 samples per 100 ms")
	var mean: float = (frames[3].x + frames[4].x + frames[5].x) / 6.0
	_check(whole.decode_s16(2) == roundi(mean * 32767.0), "one sample = mean of 3 frames, mono")
	var pieces := MicResampler.new(48000, 16000)
	var cut := PackedByteArray()
	for start: int in range(0, 4800, 700):  # uneven pieces, as _process delivers them
		cut.append_array(pieces.process(frames.slice(start, start + 700)))
	_check(cut == whole, "cutting the input anywhere gives the same output")
	_check(MicResampler.new(44100, 16000).process(frames).size() == 2 * 1741, "44.1 kHz count")
	var loud := PackedVector2Array([Vector2(2, 2), Vector2(2, 2), Vector2(2, 2)])
	_check(MicResampler.new(48000, 16000).process(loud).decode_s16(0) == 32767, "clipped")
	var started: int = Time.get_ticks_usec()
	MicResampler.new(48000, 16000).process(frames)
	print(
		(
			"mic 48 kHz -> 16 kHz: %.2f ms per 100 ms of audio"
			% ((Time.get_ticks_usec() - started) / 1000.0)
		)
	)
#endregion
