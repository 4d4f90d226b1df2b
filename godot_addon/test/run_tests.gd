extends SceneTree
## Headless unit tests of the addon's codec and reconnect back-off
## ([code]unit/zmtp_checks.gd[/code]), microphone resampler ([code]unit/mic_checks.gd[/code]),
## PCM conversions, playback queue, turn priorities, turn table, the autoload's voice logic
## ([code]unit/client_checks.gd[/code]), scenes ([code]unit/scene_checks.gd[/code]), typing
## ([code]unit/typing_checks.gd[/code]), lip sync ([code]unit/lip_sync_checks.gd[/code]) and the
## mouth helper ([code]unit/mouth_checks.gd[/code]); needs a Godot 4.3+ binary:
## [code]godot --headless --path godot_addon -s res://test/run_tests.gd[/code]
## (tests/test_godot_unit.py runs it). Exit code = failures.
## The playback checks run once the tree is up (a player plays only inside it), against the
## real mixer (headless, Godot's Dummy audio driver mixes in real time).

#region Constants
const ZmtpChecks := preload("res://test/unit/zmtp_checks.gd")
const MicChecks := preload("res://test/unit/mic_checks.gd")
const ClientChecks := preload("res://test/unit/client_checks.gd")
const SceneChecks := preload("res://test/unit/scene_checks.gd")
const TypingChecks := preload("res://test/unit/typing_checks.gd")
const LipSyncChecks := preload("res://test/unit/lip_sync_checks.gd")
const MouthChecks := preload("res://test/unit/mouth_checks.gd")
const VoiceOutput := preload("res://addons/npc_voice/voice_output.gd")
const TurnState := preload("res://addons/npc_voice/turn_state.gd")
const TurnTable := preload("res://addons/npc_voice/turn_table.gd")
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
## Frames to wait at most for the mixer (real time: about 10 s at 60 fps).
const MAX_WAIT_FRAMES: int = 600
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
	ZmtpChecks.new(_check).run()
	MicChecks.new(_check).run()
	_test_s16le_conversion()
	_test_turn_outcome()
	_test_priorities()
	await process_frame  # the root is inside the tree from here on
	await _test_voice_output()
	await _test_generator_kept_alive()
	await _test_player_taken_over()
	await _test_chunk_starts_follow_playback()
	await _test_cut_inside_the_generator()
	_test_cancel_crossing_a_barge_in()
	await ClientChecks.new(_check).run(self)
	await SceneChecks.new(_check).run(self)
	await TypingChecks.new(_check).run(self)
	await LipSyncChecks.new(_check).run(self)
	MouthChecks.new(_check).run(self)
	await process_frame  # the players freed above leave before quitting
	print("%d checks, %d failures" % [_checks, _failures])
	quit(_failures)


func _check(condition: bool, what: String) -> void:
	_checks += 1
	if not condition:
		_failures += 1
		printerr("FAIL: ", what)


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


## The [code]priority[/code] option: checked locally, sent only when it is not "normal".
func _test_priorities() -> void:
	for priority: String in ["ambient", "normal", "high"]:
		_check(TurnState.priority_problem({"priority": priority}) == "", priority + " is valid")
	_check(TurnState.priority_problem({}) == "", "no priority is valid")
	_check("urgent" in TurnState.priority_problem({"priority": "urgent"}), "urgent is not")
	_check(TurnState.priority_problem({"priority": 2}) != "", "a number is not")
	_check(TurnState.wire_priority({}) == "", "no priority: none sent")
	_check(TurnState.wire_priority({"priority": "normal"}) == "", "normal: none sent")
	_check(TurnState.wire_priority({"priority": &"high"}) == "high", "high is sent")


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


## A cut (scene_cut) falling inside what the generator already holds stops the turn there (at
## the next frame after the mixer reached it), not after everything pushed.
func _test_cut_inside_the_generator() -> void:
	var player: AudioStreamPlayer = _new_player()
	var output := VoiceOutput.new(player)
	var finished: Array[float] = []
	output.playback_finished.connect(
		func(_turn: int, _underruns: int, played: float) -> void: finished.append(played)
	)
	output.begin_turn(3, 200)
	output.push_block(3, _silence(1102), 22050, 0)  # chunk 0: 50 ms
	output.push_block(3, _silence(22050), 22050, 1)  # chunk 1: 1 s
	output.process()  # playing: the generator holds 200 ms, into chunk 1
	output.cut_turn(3, 0)
	for i: int in MAX_WAIT_FRAMES:
		if not finished.is_empty():
			break
		output.process()
		await process_frame
	_check(finished.size() == 1 and output.current_turn_id() == -1, "a cut turn ends")
	_check(not finished.is_empty() and finished[0] >= 49.9, "it played chunk 0")
	_check(not finished.is_empty() and finished[0] < 400.0, "not chunk 1: %s" % [finished])
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

#endregion
