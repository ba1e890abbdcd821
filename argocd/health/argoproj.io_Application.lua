-- Argo CD health of a child Application (app-of-apps): its own health.status. Argo CD no longer assesses
-- Applications by itself, and without this a sync wave would not wait for the CRDs' or the operator's
-- Application to be healthy before the next wave starts.
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil and obj.status.health.status ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
