class_name NpcVoicePlayer2D
extends AudioStreamPlayer2D
## Plays an NPC's streamed voice at this node's 2D position.
##
## Set [member npc_id]: every [code]NpcVoice.say(npc_id, ...)[/code] for that NPC (and every voice
## turn addressed to it) then plays here, or pass this node as [code]options.player[/code], or call
## [method say]. The stream is managed by the addon (an [AudioStreamGenerator] at the voice's sample
## rate); leave [member stream] empty. Volume, bus, attenuation and the like are yours.
## Stopping the node ([code]stop()[/code], [code]playing = false[/code]) or giving it a stream of
## your own ends the turn it plays ([code]speech_finished[/code] "cancelled");
## [member stream_paused] only pauses it.

#region Constants
const VoiceOutput := preload("voice_output.gd")
#endregion

#region Exported Properties
## The NPC whose turns this node plays ("" = only turns routed here explicitly).
@export var npc_id: String = ""
#endregion

#region Public Variables
## Playback logic shared by the three player nodes; the [code]NpcVoice[/code] autoload feeds it.
var voice_output: VoiceOutput = null
#endregion


#region Engine Callbacks
func _init() -> void:
	voice_output = VoiceOutput.new(self)
	add_to_group(VoiceOutput.PLAYER_GROUP)


func _process(_delta: float) -> void:
	voice_output.process()


func _exit_tree() -> void:
	voice_output.abort()


#endregion


#region Public Functions
## Says [param text] to [member npc_id] and plays the reply here; returns the turn id
## (see the [code]NpcVoice[/code] autoload's [code]say[/code] for [param options]).
func say(text: String, options: Dictionary = {}) -> int:
	return VoiceOutput.say_through(self, npc_id, text, options)


## Stops this node's current turn at once (barge-in); does nothing when it is silent.
func interrupt() -> void:
	var turn_id: int = voice_output.current_turn_id()
	var client: Node = get_node_or_null(^"/root/NpcVoice")
	if turn_id >= 0 and client != null:
		client.call(&"cancel", turn_id)
#endregion
