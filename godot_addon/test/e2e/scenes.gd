extends "scenario.gd"
## Scenes: the blacksmith (an [NpcVoicePlayer3D]) and the innkeeper (an [NpcVoicePlayer]) talk.
## A scene of three lines plays them in turn, each on its NPC's player, then ends by itself
## ("max_exchanges"); every frame records which players are playing (no two at once). A second
## scene: the player joins in during its first line (answered next, [code]answers_player[/code];
## the daemon's [code]scene_cut[/code], recorded with where each chunk starts, ends that line
## after the clause playing) and [code]end_scene[/code] stops the line after the answer
## ("scene_end"). Then scenes and a [code]say[/code] refused here. The players' lip-sync signals
## and the daemon's [code]timing[/code] messages are reported too (none may fire for audio a
## cut dropped).

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
const VoicePlayer3D := preload("res://addons/npc_voice/npc_voice_player_3d.gd")
## What the NPCs talk about.
const SITUATION: String = "The blacksmith and the innkeeper argue about the price of ale."
#endregion

#region Private Variables
var _players: Dictionary = {}
var _most_playing: int = 0
var _playing_frames: int = 0
var _cuts: Array[Dictionary] = []
var _chunk_starts_ms: Dictionary = {}
var _received_ms: Dictionary = {}
#endregion


#region Engine Callbacks
func _process(_delta: float) -> void:
	var playing: int = 0
	for player: Node in _players.values():
		playing += 1 if player.get(&"playing") else 0
	_most_playing = maxi(_most_playing, playing)
	_playing_frames += 1 if playing > 0 else 0


#endregion


#region Public Functions
func run() -> void:
	var smith: Node3D = VoicePlayer3D.new()
	smith.name = "Blacksmith3D"
	smith.set(&"npc_id", "blacksmith")
	add_child(smith)
	var inn: AudioStreamPlayer = VoicePlayer.new()
	inn.name = "Innkeeper"
	inn.set(&"npc_id", "innkeeper")
	add_child(inn)
	_players = {"blacksmith": smith, "innkeeper": inn}
	watch_lip_sync(smith)
	watch_lip_sync(inn)
	watch_timing_messages()
	NpcVoice.speech_started.connect(_on_voice_started)
	NpcVoice._connection.message_received.connect(_on_message_received)  # white box: the wire
	var scene: int = NpcVoice.start_scene(["blacksmith", "innkeeper"], SITUATION, 3)
	report("case", {"name": "three_lines", "scene_id": scene})
	await wait_for_event("scene_ended", scene, "scene_id")
	report("overlap", {"most_playing": _most_playing, "playing_frames": _playing_frames})
	await _join_in_and_end()
	await _refusals(scene)


#endregion


#region Private Functions
func _join_in_and_end() -> void:
	var scene: int = NpcVoice.start_scene(["innkeeper", "blacksmith"], SITUATION, 8)
	report("case", {"name": "joined", "scene_id": scene})
	var first: Dictionary = await wait_for_event("scene_line_started", scene, "scene_id")
	await wait_for_event("speech_started", first["turn_id"])
	var said: int = NpcVoice.say("blacksmith", "Brom, is that a fair price?", {"scene_id": scene})
	report("case", {"name": "interjection", "turn_id": said, "scene_id": scene})
	await wait_for_event("speech_finished", said)
	var after: Callable = func() -> bool: return _lines_of(scene).size() >= 3
	await wait_until(after, "the line after the answer")
	var next: int = _lines_of(scene)[2]["turn_id"]
	await wait_for_event("speech_started", next)
	report("case", {"name": "ended_line", "turn_id": next, "scene_id": scene})
	NpcVoice.end_scene(scene)
	await wait_for_event("scene_ended", scene, "scene_id")
	report(
		"cuts", {"cuts": _cuts, "chunk_starts_ms": _chunk_starts_ms, "received_ms": _received_ms}
	)


## Scenes and a say refused here, each ended with one error and one scene_ended (or
## speech_finished); [param over] is a scene that is over.
func _refusals(over: int) -> void:
	var cases: Dictionary = {
		"alone": NpcVoice.start_scene(["blacksmith"]),
		"twice": NpcVoice.start_scene(["blacksmith", "blacksmith"]),
		"stranger": NpcVoice.start_scene(["blacksmith", "nobody"]),
	}
	for name: String in cases:
		report("case", {"name": name, "scene_id": cases[name]})
	var late: int = NpcVoice.say("innkeeper", "Hello?", {"scene_id": over})
	report("case", {"name": "say_after_the_end", "turn_id": late})
	for scene: int in cases.values():
		await wait_for_event("scene_ended", scene, "scene_id")
	await wait_for_event("speech_finished", late)


func _lines_of(scene: int) -> Array[Dictionary]:
	return events_of("scene_line_started", scene, "scene_id")


#endregion


#region Signal Handlers
func _on_message_received(frames: Array[PackedByteArray]) -> void:
	var message: Variant = JSON.parse_string(frames[0].get_string_from_utf8())
	if not message is Dictionary:
		return
	if message.get("type") == "scene_cut":
		_cuts.append(
			{"turn_id": int(message["turn_id"]), "after_chunk_index": message["after_chunk_index"]}
		)
	if message.get("type") != "audio_block":
		return
	var turn: String = str(int(message["turn_id"]))
	var chunk: String = str(int(message["chunk_index"]))
	var received_ms: float = _received_ms.get(turn, 0.0)
	var starts: Dictionary = _chunk_starts_ms.get_or_add(turn, {})
	if not starts.has(chunk) and int(message["sample_count"]) > 0:
		starts[chunk] = received_ms
	var block_ms: float = int(message["sample_count"]) * 1000.0 / float(message["sample_rate_hz"])
	_received_ms[turn] = received_ms + block_ms


func _on_voice_started(turn_id: int, npc_id: String) -> void:
	var where: String = ""
	for player: Node in _players.values():
		if player.get(&"voice_output").current_turn_id() == turn_id:
			where = player.name
	report("played_on", {"turn_id": turn_id, "npc_id": npc_id, "player": where})
#endregion
