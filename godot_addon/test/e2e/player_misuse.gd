extends "scenario.gd"
## Game code that takes a voice player away from its turn: [code]stop()[/code],
## [code]playing = false[/code], or a [code]stream[/code] of its own. Each turn must still end
## (outcome "cancelled"), the game's own stream must play on, and the player must then play the
## next turn.

#region Constants
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
#endregion


#region Public Functions
func run() -> void:
	var player: AudioStreamPlayer = VoicePlayer.new()
	player.set(&"npc_id", "blacksmith")
	add_child(player)
	var own := AudioStreamGenerator.new()
	for how: String in ["stop", "playing_false", "stream_replaced"]:
		var turn_id: int = player.call(&"say", "Hello there, smith.")
		await wait_until(func() -> bool: return played_ms(turn_id) > 0.0, how + ": audible")
		report("case", {"name": how, "turn_id": turn_id})
		match how:
			"stop":
				player.stop()
			"playing_false":
				player.playing = false
			"stream_replaced":
				player.stream = own
				player.play()
		await wait_for_event("speech_finished", turn_id)
	report("game_stream", {"kept": player.stream == own, "playing": player.playing})
	var last: int = player.call(&"say", "Goodbye, smith.")
	report("case", {"name": "next_turn", "turn_id": last})
	await wait_until(func() -> bool: return played_ms(last) > 0.0, "next turn audible")
	player.call(&"interrupt")
	await wait_for_event("speech_finished", last)

#endregion
