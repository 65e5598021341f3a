"""Exception classes of plait.linen, named as in ``flax.errors``."""

from ._errors import ApplyModuleInvalidMethodError as ApplyModuleInvalidMethodError
from ._errors import (
    ApplyScopeInvalidVariablesStructureError as ApplyScopeInvalidVariablesStructureError,
)
from ._errors import ApplyScopeInvalidVariablesTypeError as ApplyScopeInvalidVariablesTypeError
from ._errors import AssignSubModuleError as AssignSubModuleError
from ._errors import CallCompactUnboundModuleError as CallCompactUnboundModuleError
from ._errors import CallSetupUnboundModuleError as CallSetupUnboundModuleError
from ._errors import CallShareScopeOnUnboundModuleError as CallShareScopeOnUnboundModuleError
from ._errors import CallUnbindOnUnboundModuleError as CallUnbindOnUnboundModuleError
from ._errors import FlaxError as FlaxError
from ._errors import ImmutableVariableError as ImmutableVariableError
from ._errors import InitializationNotAllowedError as InitializationNotAllowedError
from ._errors import InvalidFilterError as InvalidFilterError
from ._errors import InvalidInstanceModuleError as InvalidInstanceModuleError
from ._errors import InvalidRngError as InvalidRngError
from ._errors import InvalidScopeError as InvalidScopeError
from ._errors import LazyInitError as LazyInitError
from ._errors import LiftedVariableLayoutError as LiftedVariableLayoutError
from ._errors import LinenError as LinenError
from ._errors import ModifyScopeVariableError as ModifyScopeVariableError
from ._errors import MultipleMethodsCompactError as MultipleMethodsCompactError
from ._errors import NameInUseError as NameInUseError
from ._errors import PartitioningUnspecifiedError as PartitioningUnspecifiedError
from ._errors import ReservedModuleAttributeError as ReservedModuleAttributeError
from ._errors import ScopeCollectionNotFound as ScopeCollectionNotFound
from ._errors import ScopeParamNotFoundError as ScopeParamNotFoundError
from ._errors import ScopeParamShapeError as ScopeParamShapeError
from ._errors import ScopeVariableNotFoundError as ScopeVariableNotFoundError
from ._errors import SetAttributeFrozenModuleError as SetAttributeFrozenModuleError
from ._errors import SetAttributeInModuleSetupError as SetAttributeInModuleSetupError
from ._errors import TransformedMethodReturnValueError as TransformedMethodReturnValueError
from ._errors import TransformTargetError as TransformTargetError
from ._errors import UnboundModuleError as UnboundModuleError
