extends "scenario.gd"
## The voice player nodes in a scene (test/e2e/village.tscn): a line to the innkeeper plays on
## its [NpcVoicePlayer3D] to the end. Then each player (3D innkeeper, [NpcVoicePlayer2D]
## oracle, plain [NpcVoicePlayer] narrator) says a line through its own [code]say[/code], is
## barged in by a second one once the first is heard, and stops that one with
## [code]interrupt()[/code].


#region Public Functions
func run() -> void:
	var scene: PackedScene = load("res://test/e2e/village.tscn")
	var village: Node = scene.instantiate()
	add_child(village)
	var innkeeper: Node = village.get_node(^"World3D/Innkeeper/Voice")
	var whole: Dictionary = {"prebuffer_ms": WHOLE_REPLY_PREBUFFER_MS}
	var turn_id: int = NpcVoice.say("innkeeper", "Do you have a room for tonight?", whole)
	await wait_for_event("speech_started", turn_id)
	_report_player("innkeeper", turn_id, innkeeper)
	await wait_for_event("speech_finished", turn_id)
	await _barge_in_and_interrupt("innkeeper", innkeeper)
	await _barge_in_and_interrupt("oracle", village.get_node(^"World2D/Oracle/Voice"))
	await _barge_in_and_interrupt("narrator", village.get_node(^"Narrator"))


#endregion


#region Private Functions
func _barge_in_and_interrupt(who: String, player: Node) -> void:
	var first: int = player.call(&"say", "What do you see in my future?")
	await wait_until(func() -> bool: return played_ms(first) > 0.0, who + ": first line heard")
	var second: int = player.call(&"say", "Never mind. Tell me about the weather.")
	await wait_until(func() -> bool: return played_ms(second) > 0.0, who + ": second line heard")
	_report_player(who, second, player)
	player.call(&"interrupt")
	await wait_for_event("speech_finished", second)
	report("barge_in", {"who": who, "first": first, "second": second})


## Which node plays [param turn_id], and whether its generator is playing.
func _report_player(who: String, turn_id: int, player: Node) -> void:
	var output: RefCounted = player.get(&"voice_output")
	report(
		"player",
		{
			"who": who,
			"turn_id": turn_id,
			"class": player.get_class(),
			"playing_turn": output.call(&"current_turn_id"),
			"playing": player.get(&"playing"),
			"generator": player.get(&"stream") is AudioStreamGenerator,
		}
	)
#endregion
