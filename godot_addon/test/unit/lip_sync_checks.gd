extends RefCounted
## Unit checks of lip sync, run by [code]run_tests.gd[/code]: the timeline of
## [code]timing_track.gd[/code] (sample order, words before the visemes of their sample, bad
## entries skipped, chunks dropped); a voice output fires every event at the first frame whose
## consumed-frame count reaches its offset, never earlier, interleaved in sample order with the
## chunk starts (subtitles), against Godot's real mixer; a cut drops the later chunks' events
## (also those whose audio never came) and a stop all of them; [code]hello[/code] asks for timing
## only when [code]lip_sync[/code] is on; the autoload routes [code]timing[/code] messages to the
## turn's player, holds them with a deferred turn and drops those past a cut. The mouth helper:
## [code]unit/mouth_checks.gd[/code].

#region Constants
const FakeDaemon := preload("fake_daemon.gd")
const Client := preload("res://addons/npc_voice/npc_voice_client.gd")
const VoiceOutput := preload("res://addons/npc_voice/voice_output.gd")
const TimingTrack := preload("res://addons/npc_voice/timing_track.gd")
const HelloMessage := preload("res://addons/npc_voice/hello_message.gd")
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
## Frames to wait at most for the mixer (real time: about 10 s at 60 fps).
const MAX_WAIT_FRAMES: int = 600
## The rate of the blocks and offsets here.
const RATE: int = 22050
## The daemon's NPCs: smith speaks with visemes; inn's lip_sync is unsaid ("energy").
const NPCS: Array = [
	{"npc_id": "smith", "profile": "fast", "prebuffer_ms": 0, "lip_sync": "visemes"},
	{"npc_id": "inn", "profile": "fast", "prebuffer_ms": 0},
]
#endregion

#region Private Variables
var _check: Callable
var _tree: SceneTree = null
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
## Runs the checks; [param tree] must be running (the players play in it).
func run(tree: SceneTree) -> void:
	_tree = tree
	_test_track()
	await _test_events_follow_the_mixer()
	await _test_cut()
	await _test_stop()
	_test_hello()
	await _test_the_autoload_routes_timing()


#endregion


#region Private Functions
static func _silence(samples: int) -> PackedByteArray:
	var block := PackedByteArray()
	block.resize(2 * samples)
	return block


static func _timing(
	turn_id: int, chunk: int, words: Array, visemes: Array, mouth: Array = []
) -> Dictionary:
	return {
		"type": "timing",
		"turn_id": turn_id,
		"chunk_index": chunk,
		"sample_rate_hz": RATE,
		"source": "energy" if not mouth.is_empty() else "visemes",
		"words": words,
		"visemes": visemes,
		"mouth": mouth,
	}


static func _viseme(name: String, at: int, weight: float = 1.0) -> Dictionary:
	return {"viseme": name, "start_sample": at, "weight": weight}


static func _word(text: String, at: int) -> Dictionary:
	return {"text": text, "start_sample": at, "end_sample": at + 500}


## Records every event of [param source] (a timing track, voice output or player) into
## [param log] as "w text", "v viseme weight", "m open".
static func _record(source: Object, log: Array[String]) -> void:
	source.connect(&"word_started", func(_t: int, text: String) -> void: log.append("w " + text))
	source.connect(
		&"viseme_changed",
		func(_t: int, viseme: String, weight: float) -> void:
			log.append("v %s %.1f" % [viseme, weight])
	)
	source.connect(
		&"mouth_open_changed", func(_t: int, open: float) -> void: log.append("m %.2f" % open)
	)


func _test_track() -> void:
	var track := TimingTrack.new()
	var log: Array[String] = []
	_record(track, log)
	var words: Array = [_word("Hi,", 100), _word("you", 1200), {"text": 5, "start_sample": 1}]
	words.append({"start_sample": 2})
	var visemes: Array = [_viseme("sil", 0), _viseme("ih", 100, 0.6), _viseme("ou", 1300)]
	visemes.append_array([_viseme("xx", 1400), _viseme("sil", 2000), {"viseme": "aa"}])
	_check.call(track.add_message(_timing(1, 0, words, visemes)) == 6, "bad entries skipped")
	track.fire_reached(1, 99)
	_check.call(log == ["v sil 1.0"], "offset 0 fires at once: %s" % [log])
	track.fire_reached(1, 100)
	_check.call(log.slice(1) == ["w Hi,", "v ih 0.6"], "the word, then its viseme: %s" % [log])
	var mouth: Array = [{"start_sample": 3000, "open": 0.25}, {"start_sample": 4102, "open": 1.5}]
	track.add_message(_timing(1, 1, [], [], mouth))
	_check.call(track.next_offset() == 1200 and track.pending() == 5, "pending: 5 from 1200")
	track.fire_reached(1, 5000)
	var rest: Array[String] = ["w you", "v ou 1.0", "v sil 1.0", "m 0.25", "m 1.00"]
	_check.call(log.slice(3) == rest, "in sample order, open clamped: %s" % [log])
	_check.call(track.pending() == 0 and track.next_offset() == -1, "all fired")
	track.add_message(_timing(1, 0, [_word("late", 10)], []))
	track.fire_reached(1, 5000)
	_check.call(log.back() == "w late", "an event already due fires at the next call")
	track.add_message(_timing(1, 2, [], [], [{"start_sample": 6000, "open": 0.5}]))
	track.add_message(_timing(1, 3, [], [], [{"start_sample": 7000, "open": 0.5}]))
	track.drop_chunks_after(2)
	_check.call(track.pending() == 1 and track.next_offset() == 6000, "chunk 3 dropped")
	track.clear()
	_check.call(track.pending() == 0, "cleared")


## Events fire when the real mixer has consumed their sample, at the first frame it has.
func _test_events_follow_the_mixer() -> void:
	var player := AudioStreamPlayer.new()
	_tree.root.add_child(player)
	var output := VoiceOutput.new(player)
	var log: Array[Array] = []  # [what, played samples when it fired]
	var outputs: Array[VoiceOutput] = [output]  # cleared at the end: no lambda <-> output cycle
	var note: Callable = func(what: String) -> void: log.append([what, outputs[0].played_samples()])
	output.word_started.connect(func(_t: int, text: String) -> void: note.call("w " + text))
	output.viseme_changed.connect(func(_t: int, v: String, _w: float) -> void: note.call("v " + v))
	output.mouth_open_changed.connect(func(_t: int, _o: float) -> void: note.call("m"))
	output.chunk_started.connect(func(_t: int, chunk: int) -> void: note.call("chunk %d" % chunk))
	var ended: Array[int] = []
	output.lip_sync_ended.connect(func(turn_id: int) -> void: ended.append(turn_id))
	var expected: Array[Array] = []  # [offset, what], in firing order
	var words: Array = []
	var visemes: Array = []
	for i: int in 14:
		var viseme: String = TimingTrack.VISEMES[i + 1]
		visemes.append(_viseme(viseme, i * 1500))
		if i % 3 == 0:
			words.append(_word("w%d" % i, i * 1500))
			expected.append([i * 1500, "w w%d" % i])
		expected.append([i * 1500, "v " + viseme])
	var mouth: Array = []
	for i: int in 5:
		mouth.append({"start_sample": RATE + i * 1102, "open": i * 0.2})
		expected.append([RATE + i * 1102, "m"])
	output.begin_turn(5, 100)
	output.push_timing(5, _timing(5, 0, words, visemes))
	output.push_timing(4, _timing(4, 0, [_word("other turn", 0)], []))  # ignored
	output.push_block(5, _silence(RATE), RATE, 0)
	output.push_timing(5, _timing(5, 1, [], [], mouth))
	for i: int in 5:
		output.push_block(5, _silence(1102), RATE, 1)
	output.end_turn(5)
	var early: Array[String] = []
	var largest_step: int = 0
	var previous: int = 0
	for i: int in MAX_WAIT_FRAMES:
		if output.current_turn_id() < 0:
			break
		var was_playing: bool = player.playing
		var before: int = output.played_samples()
		largest_step = maxi(largest_step, before - previous)
		previous = before
		output.process()
		var fired: int = (
			log.filter(func(e: Array) -> bool: return not e[0].begins_with("chunk")).size()
		)
		if was_playing and fired < expected.size() and expected[fired][0] <= before:
			early.append(
				"%s due at %d, played %d" % [expected[fired][1], expected[fired][0], before]
			)
		await _tree.process_frame
	var timeline: Array[String] = []
	var names: Array[String] = []
	var worst: int = 0
	var never_early: bool = true
	for entry: Array in log:
		if entry[0].begins_with("chunk"):
			continue
		var index: int = timeline.size()
		timeline.append(entry[0])
		if index < expected.size():
			never_early = never_early and entry[1] >= expected[index][0]
			worst = maxi(worst, entry[1] - expected[index][0])
	for event: Array in expected:
		names.append(event[1])
	_check.call(timeline == names, "every event, in sample order: %s" % [timeline])
	_check.call(early.is_empty(), "no event fired a frame late: %s" % [early])
	_check.call(never_early, "no event before the mixer reached its sample")
	_check.call(worst <= largest_step, "late by %d <= one mix step %d" % [worst, largest_step])
	var order: Array[String] = []
	for entry: Array in log:
		order.append(entry[0])
	var chunk_1: int = order.find("chunk 1")
	_check.call(
		chunk_1 > order.find("v ou") and chunk_1 < order.find("m"), "chunk 1 between: %s" % [order]
	)
	_check.call(ended == [5], "lip_sync_ended once at the end: %s" % [ended])
	print(
		(
			"lip sync: %d events, latest %d samples (%.1f ms) after its offset; mix step %d samples"
			% [timeline.size(), worst, worst * 1000.0 / RATE, largest_step]
		)
	)
	outputs.clear()
	player.queue_free()


## A cut drops the later chunks' events: received ahead of their audio, or with it.
func _test_cut() -> void:
	for case: String in ["audio received", "no audio"]:
		var player := AudioStreamPlayer.new()
		_tree.root.add_child(player)
		var output := VoiceOutput.new(player)
		var log: Array[String] = []
		_record(output, log)
		output.begin_turn(6, 60)
		output.push_timing(6, _timing(6, 0, [_word("kept", 100)], [_viseme("aa", 100)]))
		output.push_timing(6, _timing(6, 1, [_word("cut", 2205)], [_viseme("ou", 2205)]))
		output.push_block(6, _silence(2205), RATE, 0)
		if case == "audio received":
			output.push_block(6, _silence(RATE), RATE, 1)
		output.process()  # playing: the generator holds chunk 0 (and some of chunk 1)
		output.cut_turn(6, 0)
		output.end_turn(6)
		for i: int in MAX_WAIT_FRAMES:
			if output.current_turn_id() < 0:
				break
			output.process()
			await _tree.process_frame
		_check.call(log == ["w kept", "v aa 1.0"], "%s: only chunk 0's events: %s" % [case, log])
		player.queue_free()


## A stopped turn fires nothing more; the next turn on the same output fires its own.
func _test_stop() -> void:
	var player := AudioStreamPlayer.new()
	_tree.root.add_child(player)
	var output := VoiceOutput.new(player)
	var log: Array[String] = []
	_record(output, log)
	var ended: Array[int] = []
	output.lip_sync_ended.connect(func(turn_id: int) -> void: ended.append(turn_id))
	output.begin_turn(7, 60)
	var words: Array = []
	for i: int in 10:
		words.append(_word("seven%d" % i, i * 2205))
	output.push_timing(7, _timing(7, 0, words, []))
	output.push_block(7, _silence(RATE), RATE, 0)
	for i: int in MAX_WAIT_FRAMES:
		if log.size() >= 2:
			break
		output.process()
		await _tree.process_frame
	output.stop_turn(7)
	var stopped_at: int = log.size()
	_check.call(ended == [7], "lip_sync_ended at the stop")
	output.begin_turn(8, 60)
	output.push_timing(8, _timing(8, 0, [_word("eight", 2000)], []))
	output.push_block(8, _silence(4410), RATE, 0)
	for i: int in MAX_WAIT_FRAMES:
		if "w eight" in log:
			break
		output.process()
		await _tree.process_frame
	_check.call(stopped_at >= 2 and stopped_at < 10, "stopped mid-way (%d words)" % stopped_at)
	_check.call(log.slice(stopped_at) == ["w eight"], "nothing of turn 7 after: %s" % [log])
	output.stop_turn(8)
	player.queue_free()


func _test_hello() -> void:
	var hello: Dictionary = HelloMessage.build(1, "0.1.0", "", 0, true)
	_check.call(hello.get("timing") == true and not hello.has("sample_rate_hz"), "timing asked")
	var off: Dictionary = HelloMessage.build(1, "0.1.0", "secret", 48000, false)
	_check.call(not off.has("timing") and off["sample_rate_hz"] == 48000, "no timing field")
	_check.call(off["token"] == "secret" and off["type"] == "hello", "the rest of the hello")


## The autoload: timing asked in hello, routed to the turn's player, held while deferred, cut.
func _test_the_autoload_routes_timing() -> void:
	var client: Client = FakeDaemon.new_client(_tree)
	_check.call(client.lip_sync, "lip_sync on by default")
	client._on_connection_opened()
	_check.call(FakeDaemon.sent(client).back().get("timing") == true, "hello asks for timing")
	var limits: Dictionary = {"max_text_chars": 500, "max_message_bytes": 65536}
	FakeDaemon.says(client, {"type": "welcome", "protocol": 1, "npcs": NPCS, "limits": limits})
	var kinds: Dictionary = {}
	for npc: Dictionary in client.get_npcs():
		kinds[npc["npc_id"]] = npc["lip_sync"]
	_check.call(kinds == {"smith": "visemes", "inn": "energy"}, "lip_sync: %s" % [kinds])
	var player: Node = VoicePlayer.new()
	player.set(&"npc_id", "smith")
	_tree.root.add_child(player)
	var log: Array[String] = []
	_record(player, log)
	client.subtitle_received.connect(
		func(_t: int, _n: String, text: String) -> void: log.append(text)
	)
	var finished: Array[int] = []
	client.speech_finished.connect(
		func(turn_id: int, _n: String, _o: String, _t: Dictionary, _u: int) -> void:
			finished.append(turn_id)
	)
	var turn: int = client.say("smith", "Hello?")
	FakeDaemon.says(client, {"type": "subtitle", "turn_id": turn, "chunk_index": 0, "text": "Hi,"})
	FakeDaemon.says(client, _timing(turn, 0, [_word("Hi,", 300)], [_viseme("sil", 0)]))
	FakeDaemon.says(client, {"type": "subtitle", "turn_id": turn, "chunk_index": 1, "text": "you."})
	FakeDaemon.says(client, _timing(turn, 1, [_word("you.", 2300)], []))
	FakeDaemon.block(client, turn, 0, 2205, 0)
	FakeDaemon.block(client, turn, 1, 2205, 1)
	FakeDaemon.says(client, {"type": "done", "turn_id": turn, "block_count": 2})
	await _wait_until(func() -> bool: return turn in finished)
	var heard: Array[String] = ["v sil 1.0", "Hi,", "w Hi,", "you.", "w you."]
	_check.call(log == heard, "subtitles and words on one clock: %s" % [log])
	log.clear()
	var deferred: int = client._turns.next_turn_id
	client._turns.begin_turn(deferred, "smith", {}, true)  # a scene line waiting for its moment
	FakeDaemon.says(client, _timing(deferred, 0, [_word("held", 100)], []))
	FakeDaemon.says(client, _timing(deferred, 1, [_word("dropped", 2300)], []))
	FakeDaemon.block(client, deferred, 0, 2205, 0)
	FakeDaemon.block(client, deferred, 1, 2205, 1)
	FakeDaemon.says(client, {"type": "timing", "turn_id": 999, "chunk_index": 0})  # unknown turn
	client._turns.cut(deferred, 0)
	FakeDaemon.says(client, _timing(deferred, 1, [_word("after the cut", 2400)], []))
	_check.call(log.is_empty(), "a deferred turn fires nothing")
	client._turns.start_deferred(deferred)
	FakeDaemon.says(client, {"type": "done", "turn_id": deferred, "block_count": 2})
	await _wait_until(func() -> bool: return deferred in finished)
	_check.call(log == ["w held"], "held events fire once it plays, cut ones never: %s" % [log])
	client.queue_free()
	player.queue_free()


func _wait_until(condition: Callable) -> void:
	for i: int in MAX_WAIT_FRAMES:
		if condition.call():
			return
		await _tree.process_frame
	_check.call(false, "timed out")
#endregion
