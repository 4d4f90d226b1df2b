extends SceneTree
## Headless unit tests of the addon's codec, PCM conversions and playback queue; needs a Godot 4.3+
## binary: [code]godot --headless --path godot_addon -s res://test/run_tests.gd[/code]
## (tests/test_gdscript_lint.py runs it when [code]godot[/code] is on PATH). Exit code = failures.

#region Constants
const Codec := preload("res://addons/npc_voice/zmtp_codec.gd")
const VoiceOutput := preload("res://addons/npc_voice/voice_output.gd")
const TurnState := preload("res://addons/npc_voice/turn_state.gd")
const MicResampler := preload("res://addons/npc_voice/mic_resampler.gd")
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
	_test_greeting()
	_test_ready()
	_test_frames()
	_test_ping_pong()
	_test_s16le_conversion()
	_test_turn_outcome()
	_test_voice_output()
	_test_mic_resampler()
	print("%d checks, %d failures" % [_checks, _failures])
	quit(_failures)


#endregion


#region Private Functions
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


func _test_voice_output() -> void:
	var player := AudioStreamPlayer.new()
	root.add_child(player)
	var output := VoiceOutput.new(
		player.play, player.stop, player.get_stream_playback, player.set_stream
	)
	var started: Array[int] = []
	output.playback_started.connect(func(turn_id: int) -> void: started.append(turn_id))
	output.begin_turn(7, 100)
	var block := PackedByteArray()
	block.resize(2 * 1102)  # 50 ms at 22050 Hz
	output.push_block(7, block, 22050)
	output.process()
	_check(started.is_empty() and not player.playing, "50 ms queued: still pre-buffering")
	output.push_block(7, block, 22050)
	output.push_block(8, block, 22050)  # another turn's block is ignored
	output.process()
	_check(started.size() == 1 and started[0] == 7 and player.playing, "100 ms queued: playing")
	var generator: AudioStreamGenerator = player.stream
	_check(generator.mix_rate == 22050.0, "generator at the PCM rate")
	_check(generator.buffer_length < 0.5, "small generator buffer")
	output.stop_turn(7)
	_check(not player.playing and output.current_turn_id() == -1, "barge-in stops at once")
	player.queue_free()


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
