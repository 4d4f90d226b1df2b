extends RefCounted
## Client-side record of one scene, kept by [code]scene_table.gd[/code] from
## [code]start_scene[/code] until its [code]scene_ended[/code] signal; dropped whole afterwards.

#region Public Variables
## The scene's id on this connection (chosen here, from 1).
var scene_id: int = -1
## Its NPCs, as sent in [code]scene_start[/code].
var npc_ids: PackedStringArray = PackedStringArray()
## Every turn of the scene still in flight here: its lines, and the player's [code]say[/code]s
## into it that wait for their answer.
var turn_ids: Array[int] = []
## Lines announced ([code]scene_line[/code]) that wait for the line playing to end:
## [code]{turn_id, npc_id, answers_player}[/code] each, in order.
var queue: Array[Dictionary] = []
## The line playing (started here), or -1.
var current_turn_id: int = -1
## Lines announced so far.
var announced: int = 0
## [code]end_scene[/code] was called (or the connection was lost): no line starts any more.
var end_requested: bool = false
## A [code]scene_end[/code] was sent for it.
var end_sent: bool = false
## Why it ended: the daemon's [code]scene_ended[/code] reason, or the addon's ("error" for a
## scene refused here, "disconnected"); "" while it runs.
var end_reason: String = ""
## Lines spoken, for the [code]scene_ended[/code] signal.
var end_lines: int = 0
#endregion
