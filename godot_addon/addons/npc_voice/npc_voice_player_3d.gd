class_name NpcVoicePlayer3D
extends AudioStreamPlayer3D
## Plays an NPC's streamed voice at this node's 3D position (positional, attenuated).
##
## Set [member npc_id]: every [code]NpcVoice.say(npc_id, ...)[/code] for that NPC (and every voice
## turn addressed to it) then plays here, or pass this node as [code]options.player[/code], or call
## [method say]. The stream is managed by the addon (an [AudioStreamGenerator] at the voice's sample
## rate); leave [member stream] empty. Volume, bus, attenuation and the like are yours.
## Stopping the node ([code]stop()[/code], [code]playing = false[/code]) or giving it a stream of
## your own ends the turn it plays ([code]speech_finished[/code] "cancelled");
## [member stream_paused] only pauses it.
##
## Lip sync (with [code]npc_voice/audio/lip_sync[/code] on): [signal word_started],
## [signal viseme_changed] and [signal mouth_open_changed] fire when the mixer has played the
## sample where they happen, not when the daemon's message arrives; an [NpcVoiceMouth] turns
## them into a moving mouth.

#region Signals
## The NPC starts saying word [param text] of turn [param turn_id] (as written, punctuation
## included; the words of a subtitle, joined with spaces, give it back): per-word subtitles.
signal word_started(turn_id: int, text: String)
## Voices with visemes (Piper): the mouth takes the shape [param viseme] ("sil", "PP", "FF",
## "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou") as far as
## [param weight] (0..1); it holds until the next one.
signal viseme_changed(turn_id: int, viseme: String, weight: float)
## Voices without visemes (hibari, XTTS): the mouth opens [param open] (0 closed .. 1 wide),
## one value per audio block, from its loudness.
signal mouth_open_changed(turn_id: int, open: float)
## No more lip-sync event of [param turn_id] comes from this node (played out, cut, cancelled,
## interrupted): close the mouth.
signal lip_sync_ended(turn_id: int)
#endregion

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
	voice_output.word_started.connect(word_started.emit)
	voice_output.viseme_changed.connect(viseme_changed.emit)
	voice_output.mouth_open_changed.connect(mouth_open_changed.emit)
	voice_output.lip_sync_ended.connect(lip_sync_ended.emit)
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
