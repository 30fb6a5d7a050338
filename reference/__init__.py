"""What the hub knows of the world besides the records it moves, and the checks that use it.

The national catalogue of supervision items (监管事项目录), the enforcement-officer list
(执法人员库) and the supervised-object list (监管对象库) reach the hub as records like any other
(datasets `supervision_item`, `enforcement_officer`, `supervised_object`); the hub keeps the
latest of each in its store (`reference.lists`). The cross-checks (`reference.rules`) then judge
a record by more than its format: its catalogue code is in force on its date, its inspectors'
certificates are valid on the inspection day, a 双随机 inspection names its plan. Each check is a
named rule that rejects the record or warns in the quality scorecard, as configured.

The room sits after `systems` and before `adapters`: ingress runs the checks on what it
translated, the worker feeds the lists.
"""
