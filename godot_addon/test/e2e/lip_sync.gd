extends "scenario.gd"
## Lip sync against the real daemon: the blacksmith (a Piper voice: words and visemes) speaks on
## an [NpcVoicePlayer2D] whose child [NpcVoiceMouth] moves a mouth, the innkeeper (hibari: a
## mouth-open value per block) on an [NpcVoicePlayer]. Every lip-sync signal is reported with
## the samples the mixer had consumed when it fired ([code]lip[/code]), every
## [code]timing[/code] message as it came off the wire ([code]timing_message[/code]), and, per
## turn, the largest number of samples the mixer consumed between two frames (one mix step, or
## more after a slow frame): pytest compares them. Cases: a reply heard whole (with a pre-buffer
## holding it all, so that the machine's speed does not matter), a reply cancelled after its
## first word, and a reply of the energy voice.

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
const VoicePlayer2D := preload("res://addons/npc_voice/npc_voice_player_2d.gd")
const Mouth := preload("res://addons/npc_voice/npc_voice_mouth.gd")
#endregion

#region Private Variables
var _players: Array[Node] = []
var _mouth: Mouth = null
var _last_played: Dictionary = {}
var _largest_step: Dictionary = {}
var _steps: Dictionary = {}
var _most_open: float = 0.0
#endregion


#region Engine Callbacks
func _init() -> void:
	process_priority = 100  # after the players: what they consumed this frame


func _process(_delta: float) -> void:
	for player: Node in _players:
		var output: RefCounted = player.get(&"voice_output")
		var turn_id: int = output.call(&"current_turn_id")
		if turn_id < 0:
			continue
		var played: int = output.call(&"played_samples")
		var step: int = played - _last_played.get(turn_id, 0)
		_last_played[turn_id] = played
		if step > 0:
			_largest_step[turn_id] = maxi(_largest_step.get(turn_id, 0), step)
			var counts: Dictionary = _steps.get_or_add(turn_id, {})
			counts[step] = counts.get(step, 0) + 1
	if _mouth != null:
		_most_open = maxf(_most_open, _mouth.get_open_amount())


#endregion


#region Public Functions
func run() -> void:
	var smith: Node2D = VoicePlayer2D.new()
	smith.set(&"npc_id", "blacksmith")
	add_child(smith)
	_mouth = Mouth.new()
	smith.add_child(_mouth)  # follows its parent player
	var inn: AudioStreamPlayer = VoicePlayer.new()
	inn.set(&"npc_id", "innkeeper")
	add_child(inn)
	_players = [smith, inn]
	for player: Node in _players:
		watch_lip_sync(player)
	watch_timing_messages()
	var kinds: Dictionary = {}
	for npc: Dictionary in NpcVoice.get_npcs():
		kinds[npc["npc_id"]] = npc["lip_sync"]
	report("npcs", {"lip_sync": kinds, "asked": NpcVoice.lip_sync})
	var whole: Dictionary = {"prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	var heard: int = NpcVoice.say("blacksmith", "Can you fix my old sword?", whole)
	report("case", {"name": "visemes", "turn_id": heard})
	await wait_for_event("speech_finished", heard)
	await wait_until(func() -> bool: return _mouth.get_open_amount() < 0.01, "the mouth closed")
	report("mouth", {"most_open": _most_open, "open_after": _mouth.get_open_amount()})
	await _cancelled()
	var energy: int = NpcVoice.say("innkeeper", "Any news from the road?", whole)
	report("case", {"name": "energy", "turn_id": energy})
	await wait_for_event("speech_finished", energy)
	report("steps", {"largest": _largest_step, "counts": _steps})


#endregion


#region Private Functions
## A reply cancelled once its first word was heard: nothing of it may fire afterwards.
func _cancelled() -> void:
	var turn_id: int = NpcVoice.say("blacksmith", "Tell me about your forge.")
	var first_word: Callable = func() -> bool:
		return events_of("lip", turn_id).any(
			func(e: Dictionary) -> bool: return e["kind"] == "word"
		)
	await wait_until(first_word, "the first word")
	report("case", {"name": "cancelled", "turn_id": turn_id})
	NpcVoice.cancel(turn_id)
	await wait_for_event("speech_finished", turn_id)
#endregion
